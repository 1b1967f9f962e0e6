#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, every crate's tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
"$repo/scripts/setup.sh"
echo "== fmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== tests"
cargo test --locked --workspace --no-fail-fast
