#!/usr/bin/env bash
# What an intercept costs (see intercept_cost.erl). Usage: bash bench/intercept/run.sh [Subscribers=1000]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ebin="$root/_build/default/lib/hornbeam/ebin"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
erlc -pa "$ebin" -o "$out" "$here/intercept_cost.erl" "$here/intercept_cost_channel.erl"
cd "$root"
ulimit -n 20000 2>/dev/null || true
exec erl -noshell -pa "$ebin" -pa "$out" -eval "intercept_cost:main([\"${1:-1000}\", \"$here\"])."
