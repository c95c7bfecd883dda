#!/usr/bin/env bash
# Installs what polltgt needs to build, run and be tested on Debian 12. Idempotent; packages already present are
# not fetched again. Usage: bash scripts/setup.sh [--test]   (--test adds the initiators and peers tests use)
set -euo pipefail
need=(gcc pkg-config ca-certificates)
if [[ "${1:-}" == "--test" ]]; then
    need+=(libiscsi-bin libiscsi-dev iproute2 procps)
fi
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "setup: cargo is in ~/.cargo/bin; run: source ~/.cargo/env" >&2
    else
        echo "setup: no Rust toolchain; install one with rustup (https://rustup.rs) and re-run" >&2
    fi
    exit 1
fi
