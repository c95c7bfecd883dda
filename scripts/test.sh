#!/usr/bin/env bash
# Sets up a Debian 12 machine for the tests and runs all of them: lints, unit tests, scenario tests and the
# integration tests that drive the real binary with libiscsi's initiators.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && source "$HOME/.cargo/env"
bash scripts/setup.sh --test
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
