#!/usr/bin/env bash
# Builds a local Debian bookworm base image with python3 (3.11) and libgomp1 with debootstrap, for
# machines that cannot pull python:3.11-slim from Docker Hub. Cached: does nothing if the image exists.
#
#   scripts/docker_base.sh [IMAGE]      # default: flight-delay-base:bookworm
#   make docker/install BASE_IMAGE=flight-delay-base:bookworm
#
# Needs root, debootstrap and a Debian mirror (DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail

image=${1:-${LOCAL_BASE_IMAGE:-flight-delay-base:bookworm}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "docker_base: $image exists, not rebuilding (docker rmi $image to force)"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker_base: debootstrap is missing (apt-get install -y debootstrap)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/flight-delay-base.XXXXXX)
rootfs=$work/rootfs
cleanup() {
    # debootstrap mounts proc/sys inside the target while it runs; never follow them when deleting.
    findmnt -rn -o TARGET | grep "^$rootfs" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "docker_base: debootstrap $suite into $rootfs (log: $work/debootstrap.log)"
if ! debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    echo "docker_base: debootstrap failed" >&2
    exit 1
fi

# The host's CA bundle (it may hold a CA that the host's route to PyPI needs), and pip told to use it.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
ln -sf python3 "$rootfs/usr/bin/python"

# What a slim image leaves out: downloaded packages, apt lists, docs (but the copyrights), man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
find "$rootfs/usr/share/doc" -type d -empty -delete

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $suite + python3 python3-venv python3-pip libgomp1" \
    - "$image" >/dev/null
echo "docker_base: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
