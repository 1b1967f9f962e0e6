#!/bin/sh
# Writes data/: FILES files (default 2000) of deterministic content, SIZE_KB each
# (default 64 KiB), about 125 MiB in all.
set -eu
cd "$(dirname "$0")"
files="${FILES:-2000}"
size_kb="${SIZE_KB:-64}"
rm -rf data
mkdir -p data
i=0
while [ "$i" -lt "$files" ]; do
  d="data/d$((i / 100))"
  mkdir -p "$d"
  yes "strata large-copy example file $i" | head -c "$((size_kb * 1024))" > "$d/f$i"
  i=$((i + 1))
done
echo "data/: $files files of $size_kb KiB"
