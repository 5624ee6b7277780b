#!/usr/bin/env bash
# Builds the Rust parts (the NIF and, when present, the Python worker port)
# in release mode and copies them into priv/, where the OTP app loads them.
# Called by rebar3's pre_hooks, by mix's compiler step and by `make build`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "build_native: cargo not found; install Rust (rustup) to build the hornbeam NIF" >&2
  exit 1
fi

packages=(-p hornbeam_nif)
if [ -f native/hornbeam_worker/Cargo.toml ]; then
  packages+=(-p hornbeam_worker)
fi

cargo build --release --quiet "${packages[@]}"

target="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p priv
install_if_changed() { # copy only when the bytes differ, so the VM's loaded .so is not rewritten needlessly
  if ! cmp -s "$1" "$2"; then cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; fi
}
case "$(uname -s)" in
  Darwin) install_if_changed "$target/libhornbeam_nif.dylib" priv/hornbeam_nif.so ;;
  *)      install_if_changed "$target/libhornbeam_nif.so" priv/hornbeam_nif.so ;;
esac
if [ -f "$target/hornbeam_worker" ] && [ -f native/hornbeam_worker/Cargo.toml ]; then
  install_if_changed "$target/hornbeam_worker" priv/hornbeam_worker
  chmod +x priv/hornbeam_worker
fi
