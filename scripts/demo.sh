#!/usr/bin/env bash
# The main job: set-up, build strata, then with the embedded services over a fresh data root:
# import a busybox base (from Debian's busybox-static: no registry needed), build
# examples/hello, and show the image's history.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
"$repo/scripts/setup.sh"
cargo build --locked -p strata-cli -p strata-parser -p strata-layer-store -p strata-tag-index -p strata-executor
export STRATA_ROOT="${STRATA_ROOT:-$(mktemp -d /tmp/strata-demo.XXXXXX)}"
echo "== data root: $STRATA_ROOT"
echo "== strata health (the four services, embedded)"
strata health
echo "== strata import busybox.tar busybox:latest (a base image from busybox-static)"
base_tar="$(mktemp /tmp/busybox-rootfs.XXXXXX.tar)"
"$repo/scripts/busybox-rootfs.sh" "$base_tar"
strata import "$base_tar" busybox:latest
rm -f "$base_tar"
echo "== strata build -t hello:latest examples/hello"
strata build -t hello:latest examples/hello
echo "== strata history hello:latest"
strata history hello:latest
echo "== strata images"
strata images
