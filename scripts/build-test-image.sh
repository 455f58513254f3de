#!/bin/sh
# Build the offline test image edgebac-test/busybox:1 from Debian's busybox-static.
# No registry, no internet: the root filesystem is /bin/busybox plus relative symlinks,
# imported with `docker import`. Idempotent: does nothing if the image already exists.
# Usage: scripts/build-test-image.sh [IMAGE]    (needs a running Docker engine)
set -eu

IMAGE="${1:-edgebac-test/busybox:1}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
# Applets linked in /bin (the busybox binary provides them all; these are what tests use).
APPLETS="sh ash ls cat echo sleep wc head tail cp mv rm mkdir rmdir touch find grep sed awk
sort uniq tr cut tee env printf test [ true false date pwd id whoami hostname uname ps kill
du df stat md5sum sha256sum dd seq yes xargs basename dirname realpath readlink ln chmod
gzip gunzip zcat tar vi timeout nproc free top mount dmesg"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "image $IMAGE already exists"
    exit 0
fi
if [ ! -x "$BUSYBOX" ]; then
    echo "error: $BUSYBOX not found (apt-get install busybox-static)" >&2
    exit 1
fi
if ! "$BUSYBOX" true; then
    echo "error: $BUSYBOX does not run" >&2
    exit 1
fi
command -v docker >/dev/null 2>&1 || { echo "error: no docker client on PATH" >&2; exit 1; }

ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT INT TERM
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/root"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $APPLETS; do
    ln -s busybox "$ROOT/bin/$applet"   # relative: resolves inside the container
done
mkdir -p "$ROOT/usr"
ln -s ../bin "$ROOT/usr/bin"
ln -s bin "$ROOT/sbin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"

tar -C "$ROOT" --numeric-owner --owner=0 --group=0 -cf - . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    --message 'edgebac offline test image (busybox-static)' \
    - "$IMAGE" >/dev/null
echo "built image $IMAGE"
