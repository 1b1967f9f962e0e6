#!/usr/bin/env bash
# The main job: set-up, build strata, build examples/hello with the embedded services over a
# fresh data root, and show the image's history.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
"$repo/scripts/setup.sh"
cargo build --locked -p strata-cli -p strata-parser -p strata-layer-store -p strata-tag-index -p strata-executor
export STRATA_ROOT="${STRATA_ROOT:-$(mktemp -d /tmp/strata-demo.XXXXXX)}"
echo "== data root: $STRATA_ROOT"
echo "== strata health (the four services, embedded)"
strata health
