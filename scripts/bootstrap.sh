#!/usr/bin/env bash
# Installs whatever this machine lacks to build and test hornbeam:
# Debian packages (OTP 25, rebar3, Elixir, test frameworks, Chromium),
# Python test packages, npm test packages. Idempotent: when everything is
# present it only checks, in a second or two.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

say() { printf 'bootstrap: %s\n' "$*"; }

# --- Debian packages -----------------------------------------------------------
debs=(erlang-nox erlang-dev rebar3 elixir erlang-eunit erlang-common-test
      erlang-dialyzer erlang-proper erlang-proper-dev erlang-meck erlang-jiffy
      chromium)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust -----------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  say "cargo is missing: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi

# --- Python test packages --------------------------------------------------------
py_missing=()
python3 -c 'import pytest' 2>/dev/null || py_missing+=(pytest)
# a real ASGI framework for test/hornbeam_asgi_SUITE.erl
python3 -c 'import starlette' 2>/dev/null || py_missing+=(starlette)
# mypy --strict over the public Python API (make mypy, part of lint and test-python)
python3 -c 'import mypy' 2>/dev/null || py_missing+=(mypy)
# a real Django project for test/hornbeam_django_SUITE.erl (test/django); the
# same pin as bench/requirements.txt
python3 -c 'import django, sys; sys.exit(django.VERSION[:2] != (5, 2))' 2>/dev/null || py_missing+=("Django==5.2.19")
if [ ${#py_missing[@]} -gt 0 ]; then
  say "installing Python packages: ${py_missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}"
fi

# --- npm test packages -------------------------------------------------------------
if [ -f test/js/package.json ] && [ ! -d test/js/node_modules ]; then
  say "installing npm packages for test/js"
  if [ -f test/js/package-lock.json ]; then
    (cd test/js && npm ci --silent --no-audit --no-fund >/dev/null)
  else
    (cd test/js && npm install --silent --no-audit --no-fund >/dev/null)
  fi
fi
say "ok"
