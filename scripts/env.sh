# Sourced by the other scripts: where the build goes and where the test data is.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A persistent target directory outside the clone: RocksDB's C++ takes ~20 minutes to build
# from empty on 2 cores, and a fresh clone should not pay it again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/strata/target}"
mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || export CARGO_TARGET_DIR="$repo/target"
# The parser's test corpus lives outside the repository (../shared/corpus), read in place.
export STRATA_CORPUS="${STRATA_CORPUS:-$(cd "$repo/.." && pwd)/shared/corpus}"
export PATH="$CARGO_TARGET_DIR/debug:$PATH"
