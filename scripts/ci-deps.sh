#!/bin/sh
# Install the Debian packages the test infrastructure needs, only those missing (idempotent).
#   docker.io iptables cgroupfs-mount
#                        Docker engine (dockerd, containerd, runc, tini come as dependencies;
#                        iptables for the default bridge network; cgroupfs-mount for machines
#                        whose init does not mount cgroups)
#   busybox-static       the offline test image edgebac-test/busybox:1
#   clang lld wasi-libc libclang-rt-dev-wasm32
#                        rebuild/check fixtures/wasm/*.wasm (clang --target=wasm32-wasi)
#   llvm                 llvm-strip: strips native libraries of any architecture in the pyz
#   nodejs npm           ipfs-car, the reference for our content ids (tests/ipfscar.py)
# Python packages (wasmtime, boto3, moto[server], ...) come from pyproject, not from here.
set -eu

PACKAGES="docker.io iptables cgroupfs-mount busybox-static clang lld wasi-libc libclang-rt-dev-wasm32 llvm"
# Node.js may come from elsewhere (with npm inside): ask Debian only when npm is missing.
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
    echo "ci-deps: all present ($PACKAGES)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ci-deps: error: missing Debian packages:$missing (run as root)" >&2
    exit 1
fi
echo "ci-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
