#!/usr/bin/env bash
# Build the offline base image from Debian's own packages (no image registry needed).
#
#   container/make_offline_base.sh [IMAGE_TAG]      default: sm-toolkit-base:bookworm
#
# debootstraps a minimal Debian bookworm (python3 = 3.11) with everything the training image
# needs from apt (OpenMPI + openssh for the mpi distribution, tini as PID 1), trims docs and
# caches, and imports the folder as a single-layer image. Only the Debian mirror is contacted
# (MIRROR, default: the first URI in the host's apt sources, else deb.debian.org).
# Needs root, debootstrap and a running Docker daemon.
set -euo pipefail

TAG="${1:-sm-toolkit-base:bookworm}"
SUITE="${SUITE:-bookworm}"
WORK="${BASE_WORKDIR:-$(cd "$(dirname "$0")" && pwd)/base}"
ROOTFS="$WORK/rootfs"
PACKAGES="python3,python3-venv,openmpi-bin,openssh-server,openssh-client,tini,ca-certificates,procps"

die() { echo "make_offline_base: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install -y debootstrap)"
docker info >/dev/null 2>&1 || die "no Docker daemon (run .ci/docker.sh first)"

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '{print $2}' | grep -v security | head -1 || true)
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi

rm -rf "$ROOTFS" && mkdir -p "$ROOTFS"
echo "make_offline_base: debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (full log: $WORK/debootstrap.log)"; }

# Trim what a training container never reads; keeps the one import layer small.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.UTF-8' -exec rm -rf {} +
# Host keys generated at debootstrap time would be shared by every container; the image
# regenerates them (ssh-keygen -A) in its own build step instead.
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
# Point apt at the same mirror so users can extend the image when they do have a network.
echo "deb $MIRROR $SUITE main" >"$ROOTFS/etc/apt/sources.list"

tar -C "$ROOTFS" -c . | docker import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
rm -rf "$ROOTFS"
echo "make_offline_base: built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=iec))"
