#!/usr/bin/env bash
# Builds a minimal busybox root filesystem tar, byte-for-byte deterministic, from the host's
# busybox-static (Debian package busybox-static, /usr/bin/busybox):
#
#   bin/busybox               the static binary
#   bin/<applet> -> busybox   one symlink per applet of `busybox --list` (sh, ls, cat, echo, ...)
#   etc/passwd, etc/group     root and nobody
#   tmp/                      mode 1777
#   root/, home/, dev/, proc/, sys/, usr/, var/   empty directories a container expects
#
# Every entry: uid/gid 0, mtime SOURCE_DATE_EPOCH (default 0), PAX format, sorted by name, no
# atime/ctime, so the same busybox gives the same tar (and the same diff_id) on any machine.
#
#   scripts/busybox-rootfs.sh OUT.tar        then: strata import OUT.tar busybox:latest
set -euo pipefail

out="${1:?usage: busybox-rootfs.sh OUT.tar}"
busybox="${BUSYBOX:-/usr/bin/busybox}"
epoch="${SOURCE_DATE_EPOCH:-0}"
[ -x "$busybox" ] || { echo "busybox-rootfs: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }

tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT

mkdir -p "$tree"/{bin,etc,tmp,root,home,dev,proc,sys,usr,var}
install -m 0755 "$busybox" "$tree/bin/busybox"
for applet in $("$busybox" --list); do
  case "$applet" in
    busybox|*/*|"") continue ;;
  esac
  ln -s busybox "$tree/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tree/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
chmod 0644 "$tree/etc/passwd" "$tree/etc/group"
chmod 0755 "$tree"/{bin,etc,root,home,dev,proc,sys,usr,var}
chmod 0700 "$tree/root"
chmod 1777 "$tree/tmp"

# Entries are named without a leading "./", as OCI layers conventionally are.
(cd "$tree" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$tree.list"
tar --create --file="$out" --directory="$tree" \
  --no-recursion --verbatim-files-from --files-from="$tree.list" \
  --format=pax --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --sort=none
rm -f "$tree.list"
echo "$out"
