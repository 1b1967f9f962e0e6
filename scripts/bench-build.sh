#!/usr/bin/env bash
# Builds the examples with strata and, when installed, Buildah (chroot isolation, overlay
# storage, the same busybox base) back to back in one run, on tmpfs stores, and prints wall
# time and peak RSS for a cold build and a fully cached rebuild, with strata/Buildah ratios.
#
#   scripts/bench-build.sh [EXAMPLE...]      (default: hello layers multistage large-copy)
#   CACHED_RUNS=N (default 5): cached builds are run N times and their median reported
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
strata="${STRATA:-${CARGO_TARGET_DIR:-/var/cache/strata/target}/debug/strata}"
examples=("$@")
[ ${#examples[@]} -gt 0 ] || examples=(hello layers multistage large-copy)
work="$(mktemp -d /dev/shm/strata-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$repo/scripts/busybox-rootfs.sh" "$work/busybox.tar" >/dev/null
[ -d "$repo/examples/large-copy/data" ] || "$repo/examples/large-copy/generate.sh" >/dev/null

# measure CMD...: wall seconds (ms resolution: cached builds take tens of ms) and peak RSS
# (KiB, /usr/bin/time: the largest of CMD and its children)
measure() {
  local out="$work/time.$$" t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$out" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  t1=$(date +%s%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') $(cat "$out")"
}

# measure_median N CMD...: CMD run N times (every run fully cached); the median wall time
# and the largest peak RSS. One sample of a ~30 ms command on a shared VM is mostly noise,
# so cached builds are measured this way on both sides.
runs="${CACHED_RUNS:-5}"
measure_median() {
  local n=$1 i
  shift
  for i in $(seq 1 "$n"); do measure "$@" || return 1; done |
    sort -n | awk '{ t[NR] = $1; if ($2 > m) m = $2 } END { print t[int((NR + 1) / 2)], m }'
}

have_buildah=false
command -v buildah >/dev/null && have_buildah=true
if $have_buildah; then
  bstore="$work/buildah"
  bah=(buildah --root "$bstore/root" --runroot "$bstore/run" --storage-driver overlay)
  (cd "$work" && mkdir -p bb && tar -xf busybox.tar -C bb)
  ctr=$("${bah[@]}" from scratch)
  "${bah[@]}" copy "$ctr" "$work/bb/" / >/dev/null
  "${bah[@]}" commit -q "$ctr" busybox:latest >/dev/null
fi

printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' example build strata_s buildah_s strata_rss_k buildah_rss_k t_ratio rss_ratio
for ex in "${examples[@]}"; do
  export STRATA_ROOT="$work/strata-$ex"
  SOURCE_DATE_EPOCH=0 "$strata" import "$work/busybox.tar" busybox:latest >/dev/null
  read -r s_cold s_cold_rss < <(measure "$strata" build -q -t "bench-$ex" "$repo/examples/$ex")
  read -r s_hot s_hot_rss < <(measure_median "$runs" "$strata" build -q -t "bench-$ex" "$repo/examples/$ex")
  # the same cached build against `strata serve` on the root (the daemon shape of Docker and
  # BuildKit): the CLI no longer opens the databases itself; RSS is the CLI's alone
  "$strata" serve >"$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 100); do [ -S "$STRATA_ROOT/strata.sock" ] && break; sleep 0.1; done
  [ -S "$STRATA_ROOT/strata.sock" ] || { cat "$work/serve.log" >&2; exit 1; }
  # one build warms the daemon (connections, caches); the figure is the median of the next
  "$strata" build -q -t "bench-$ex" "$repo/examples/$ex" >/dev/null
  read -r s_srv s_srv_rss < <(measure_median "$runs" "$strata" build -q -t "bench-$ex" "$repo/examples/$ex")
  kill -TERM "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" || true
  b_cold=- b_cold_rss=- b_hot=- b_hot_rss=-
  if $have_buildah; then
    read -r b_cold b_cold_rss < <(measure "${bah[@]}" bud --isolation chroot --layers -q -t "bench-$ex" "$repo/examples/$ex")
    read -r b_hot b_hot_rss < <(measure_median "$runs" "${bah[@]}" bud --isolation chroot --layers -q -t "bench-$ex" "$repo/examples/$ex")
  fi
  ratio() { if [ "$2" = - ]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; fi; }
  printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' "$ex" cold "$s_cold" "$b_cold" "$s_cold_rss" "$b_cold_rss" "$(ratio "$s_cold" "$b_cold")" "$(ratio "$s_cold_rss" "$b_cold_rss")"
  printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' "$ex" cached "$s_hot" "$b_hot" "$s_hot_rss" "$b_hot_rss" "$(ratio "$s_hot" "$b_hot")" "$(ratio "$s_hot_rss" "$b_hot_rss")"
  printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' "$ex" cached-srv "$s_srv" "$b_hot" "$s_srv_rss" "$b_hot_rss" "$(ratio "$s_srv" "$b_hot")" "$(ratio "$s_srv_rss" "$b_hot_rss")"
done
