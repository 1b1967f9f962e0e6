#!/usr/bin/env bash
# Builds the examples with strata and, when installed, Buildah (chroot isolation, overlay
# storage, the same busybox base) back to back in one run, on tmpfs stores, and prints wall
# time and peak RSS for a cold build and a fully cached rebuild, with strata/Buildah ratios.
#
#   scripts/bench-build.sh [EXAMPLE...]      (default: hello layers multistage large-copy)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
strata="${STRATA:-${CARGO_TARGET_DIR:-/var/cache/strata/target}/debug/strata}"
examples=("$@")
[ ${#examples[@]} -gt 0 ] || examples=(hello layers multistage large-copy)
work="$(mktemp -d /dev/shm/strata-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$repo/scripts/busybox-rootfs.sh" "$work/busybox.tar" >/dev/null
[ -d "$repo/examples/large-copy/data" ] || "$repo/examples/large-copy/generate.sh" >/dev/null

# run LABEL CMD...: wall seconds and peak RSS (KiB) of CMD and its children
measure() {
  local out="$work/time.$$"
  /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  cat "$out"
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
  read -r s_hot s_hot_rss < <(measure "$strata" build -q -t "bench-$ex" "$repo/examples/$ex")
  b_cold=- b_cold_rss=- b_hot=- b_hot_rss=-
  if $have_buildah; then
    read -r b_cold b_cold_rss < <(measure "${bah[@]}" bud --isolation chroot --layers -q -t "bench-$ex" "$repo/examples/$ex")
    read -r b_hot b_hot_rss < <(measure "${bah[@]}" bud --isolation chroot --layers -q -t "bench-$ex" "$repo/examples/$ex")
  fi
  ratio() { if [ "$2" = - ]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; fi; }
  printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' "$ex" cold "$s_cold" "$b_cold" "$s_cold_rss" "$b_cold_rss" "$(ratio "$s_cold" "$b_cold")" "$(ratio "$s_cold_rss" "$b_cold_rss")"
  printf '%-12s %-8s %10s %10s %12s %12s %8s %8s\n' "$ex" cached "$s_hot" "$b_hot" "$s_hot_rss" "$b_hot_rss" "$(ratio "$s_hot" "$b_hot")" "$(ratio "$s_hot_rss" "$b_hot_rss")"
done
