#!/usr/bin/env bash
# Benchmarks polltgt against tgt on this machine: builds polltgt and the harness in release mode, installs tgt,
# iperf3 and libiscsi's tools when missing, and runs the harness (results in bench/results.md). Extra arguments go
# to the harness, e.g. `bash bench/run.sh --seconds 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && source "$HOME/.cargo/env"
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
need=()
command -v tgtd >/dev/null || need+=(tgt)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v iscsi-perf >/dev/null || need+=(libiscsi-bin)
[[ -f /usr/include/iscsi/iscsi.h ]] || need+=(libiscsi-dev)
command -v cc >/dev/null || need+=(gcc)
if [[ ${#need[@]} -gt 0 ]]; then
    $SUDO apt-get install -y "${need[@]}"
fi
cargo build --release --locked -p polltgt -p polltgt-bench
exec target/release/polltgt-bench "$@"
