#!/usr/bin/env bash
# Benchmark: push/pull of a ~500 MB image to a loopback docker-registry beside `skopeo copy`
# of the same image in the same run, and `strata save` beside `tar | openssl dgst -sha256`
# over the same bytes. Prints the figures as a Markdown table.
#
#   scripts/bench-transfer.sh [SIZE_MB]        (default 500; needs a built strata binary)
#   REPEAT=N scripts/bench-transfer.sh ...     (pull and save pairs; default 5)
#
# The machines are noisy (a 2-core VM whose neighbours compile): the pull and the save are
# each measured REPEAT times, strata and its peer alternating, and the table gives the
# median of each side (the lower middle one for an even REPEAT), its ratio, and every pair's
# ratio. The first push is measured once:
# a second would find its compressed layers remembered and the registry holding the blobs.
#
# The image is one layer: a tar of real files from /usr/lib (compressible like a rootfs),
# cut at SIZE_MB. Both stores and the registry live in one temp dir on the same disk.
set -euo pipefail

size_mb="${1:-500}"
target="${CARGO_TARGET_DIR:-/var/cache/strata/target}"
strata="${STRATA_BIN:-$target/debug/strata}"
[ -x "$strata" ] || { echo "bench: build strata first (cargo build -p strata-cli)" >&2; exit 1; }

work="$(mktemp -d /var/tmp/strata-bench.XXXXXX)"
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# 1. the image: real files, sorted, cut at SIZE_MB
find /usr/lib -type f -size -64M -printf '%P\n' 2>/dev/null | LC_ALL=C sort >"$work/all"
: >"$work/list"
total=0
limit=$((size_mb * 1024 * 1024))
while IFS= read -r f; do
  s=$(stat -c %s "/usr/lib/$f" 2>/dev/null || echo 0)
  total=$((total + s))
  echo "$f" >>"$work/list"
  [ "$total" -ge "$limit" ] && break
done <"$work/all"
tar -cf "$work/rootfs.tar" -C /usr/lib --no-recursion --files-from="$work/list" --mtime=@0 --owner=0 --group=0 --numeric-owner
bytes=$(stat -c %s "$work/rootfs.tar")

export STRATA_ROOT="$work/root-a"
"$strata" import "$work/rootfs.tar" bench:1 >/dev/null

# 2. save vs tar | openssl over the same bytes, alternating
"$strata" export --format oci -o "$work/layout" bench:1
sync
repeat="${REPEAT:-5}"
saves=(); floors=()
for _ in $(seq "$repeat"); do
  t=$(now); tar -cf - -C "$work/layout" . | openssl dgst -sha256 >/dev/null; floors+=("$(elapsed "$t")")
  rm -f "$work/saved.tar"
  t=$(now); "$strata" save -o "$work/saved.tar" bench:1; saves+=("$(elapsed "$t")")
done

# 3. the registry: binds 127.0.0.1:0 itself, the port read from its log
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:0
  secret: bench
EOF
/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  addr=$(grep -o 'listening on [0-9.:]*' "$work/registry.log" | head -1 | cut -d' ' -f3 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "bench: registry did not start" >&2; cat "$work/registry.log" >&2; exit 1; }

t=$(now); skopeo copy -q --dest-tls-verify=false "oci:$work/layout:1" "docker://$addr/bench/skopeo:1"; t_skopeo_push=$(elapsed "$t")
t=$(now); "$strata" push -q bench:1 "$addr/bench/strata:1" >/dev/null; t_push=$(elapsed "$t")
t=$(now); "$strata" push -q bench:1 "$addr/bench/strata:1" >/dev/null; t_push2=$(elapsed "$t")
# cpu_of FILE: user + system seconds /usr/bin/time wrote there
cpu_of() { awk '{ printf "%.2f", $1 + $2 }' "$1"; }
pulls=(); skopeo_pulls=(); pull_cpu=(); skopeo_cpu=()
for i in $(seq "$repeat"); do
  rm -rf "$work/pulled"
  t=$(now); /usr/bin/time -f '%U %S' -o "$work/cpu.skopeo" skopeo copy -q --src-tls-verify=false "docker://$addr/bench/strata:1" "oci:$work/pulled:1"; skopeo_pulls+=("$(elapsed "$t")")
  skopeo_cpu+=("$(cpu_of "$work/cpu.skopeo")")
  rm -rf "$work/root-b"
  export STRATA_ROOT="$work/root-b"
  t=$(now); /usr/bin/time -f '%U %S' -o "$work/cpu.strata" "$strata" pull -q "$addr/bench/strata:1" >/dev/null; pulls+=("$(elapsed "$t")")
  pull_cpu+=("$(cpu_of "$work/cpu.strata")")
done
# the same work as strata's pull: skopeo also inflates each layer and writes it uncompressed
t=$(now); skopeo copy -q --src-tls-verify=false --dest-decompress "docker://$addr/bench/strata:1" "dir:$work/pulled-dir"; t_skopeo_pull_d=$(elapsed "$t")
layer_gz=$(find "$work/registry" -path '*/blobs/sha256/*' -name data -size +1M -printf '%s\n' | head -1)

ratio() { echo "scale=2; $1 / $2" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# pairs A[@] B[@]: each pair's ratio, space-separated
pairs() {
  local -n a=$1 b=$2
  local out=()
  for i in "${!a[@]}"; do out+=("$(ratio "${a[$i]}" "${b[$i]}")"); done
  echo "${out[*]}"
}
t_pull=$(median "${pulls[@]}"); t_skopeo_pull=$(median "${skopeo_pulls[@]}")
t_save=$(median "${saves[@]}"); t_tar=$(median "${floors[@]}")
echo "| step | strata (s) | peer (s) | ratio | each pair |"
echo "|---|---|---|---|---|"
printf '| push %d MB (first, compresses) vs skopeo copy oci: -> docker:// | %.2f | %.2f | %s | |\n' "$((bytes / 1000000))" "$t_push" "$t_skopeo_push" "$(ratio "$t_push" "$t_skopeo_push")"
printf '| push again (nothing to upload) | %.2f | | | |\n' "$t_push2"
printf '| pull (decompress into the store) vs skopeo copy docker:// -> oci:, median of %d | %.2f | %.2f | %s | %s |\n' "$repeat" "$t_pull" "$t_skopeo_pull" "$(ratio "$t_pull" "$t_skopeo_pull")" "$(pairs pulls skopeo_pulls)"
printf '| pull: CPU seconds (user + sys), median; layer of %d MB as pushed | %s | %s | %s | %s |\n' "$((layer_gz / 1000000))" "$(median "${pull_cpu[@]}")" "$(median "${skopeo_cpu[@]}")" "$(ratio "$(median "${pull_cpu[@]}")" "$(median "${skopeo_cpu[@]}")")" "$(pairs pull_cpu skopeo_cpu)"
printf '| pull vs skopeo copy --dest-decompress docker:// -> dir: (the same inflating), once | %.2f | %.2f | %s | |\n' "$t_pull" "$t_skopeo_pull_d" "$(ratio "$t_pull" "$t_skopeo_pull_d")"
printf '| save vs tar -c layout \\| openssl dgst -sha256, median of %d | %.2f | %.2f | %s | %s |\n' "$repeat" "$t_save" "$t_tar" "$(ratio "$t_save" "$t_tar")" "$(pairs saves floors)"
