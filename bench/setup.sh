#!/usr/bin/env bash
# Installs the benchmark's peers: bench/.venv (Python peers + matplotlib, from
# bench/requirements.txt) and bench/peers/node/node_modules (socket.io, from
# package.json / package-lock.json). Idempotent: a stamp of the inputs makes
# a second run return at once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"
venv="$here/.venv"
stamp_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }

want="$(stamp_of requirements.txt)-$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.bench-stamp" 2>/dev/null)" != "$want" ]; then
  echo "bench/setup.sh: creating bench/.venv ($("$python" --version))"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$venv/.bench-stamp"
else
  echo "bench/setup.sh: bench/.venv is up to date"
fi

node_dir="$here/peers/node"
if command -v npm >/dev/null 2>&1; then
  want="$(stamp_of "$node_dir/package.json" "$node_dir/package-lock.json")"
  if [ ! -d "$node_dir/node_modules" ] || [ "$(cat "$node_dir/node_modules/.bench-stamp" 2>/dev/null)" != "$want" ]; then
    echo "bench/setup.sh: npm install in bench/peers/node"
    if [ -f "$node_dir/package-lock.json" ]; then
      (cd "$node_dir" && npm ci --silent --no-audit --no-fund)
    else
      (cd "$node_dir" && npm install --silent --no-audit --no-fund)
    fi
    echo "$(stamp_of "$node_dir/package.json" "$node_dir/package-lock.json")" > "$node_dir/node_modules/.bench-stamp"
  else
    echo "bench/setup.sh: bench/peers/node/node_modules is up to date"
  fi
else
  echo "bench/setup.sh: npm not found; the socket.io (Node) peer will be skipped" >&2
fi

# Redis for the django-channels-redis peer (Debian's package; the harness
# starts its own server per run, so the system service is not needed).
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "bench/setup.sh: apt-get install redis-server"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
      || echo "bench/setup.sh: could not install redis-server; django-channels-redis will be skipped" >&2
  else
    echo "bench/setup.sh: no redis-server and no apt-get; django-channels-redis will be skipped" >&2
  fi
fi
