#!/usr/bin/env bash
# Builds polltgt and serves on its embedded default (kernel TCP on 127.0.0.1:3260, target
# iqn.2026-11.io.polltgt:default with a 1 GiB RAM disk as LUN 0), or with the YAML file given as argument.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && source "$HOME/.cargo/env"
bash scripts/setup.sh
cargo build --release --locked
if [[ $# -gt 0 ]]; then
    exec target/release/polltgt serve --config "$1"
fi
exec target/release/polltgt serve
