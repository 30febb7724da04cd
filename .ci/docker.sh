#!/usr/bin/env bash
# Provision Docker for the container tier: install Debian's docker.io (+ docker-compose v1, which
# SageMaker local mode falls back to, and debootstrap for the offline base image), start dockerd,
# wait until `docker info` answers. Idempotent: does nothing that is already done.
# Fails loudly with the reason when Docker cannot be provisioned. Needs root.
#
# Storage driver: overlay2 when the kernel and filesystem allow it, else vfs (works anywhere, but
# copies the whole 1.6 GB image for every layer and every container start: minutes, not seconds).
# Force one with DOCKER_STORAGE_DRIVER=vfs|overlay2. No iptables and no default bridge: sandboxes
# rarely allow them and the jobs need no egress. User-defined bridge networks (SageMaker local
# mode makes one) still work.
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
WAIT_S="${DOCKERD_WAIT_S:-60}"

die() { echo ".ci/docker.sh: cannot provision Docker: $*" >&2; exit 1; }

docker_ready() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && docker_ready; then
  echo ".ci/docker.sh: Docker already running ($(docker info -f '{{.ServerVersion}} {{.Driver}}'))"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root to install and start dockerd (uid is $(id -u))"

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
  || missing="$missing docker-compose"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || die "no apt-get to install:$missing"
  echo ".ci/docker.sh: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq $missing >/dev/null || die "apt-get install$missing failed"
fi

# Start dockerd with one storage driver; 0 once `docker info` answers, 1 if dockerd exits.
start_dockerd() {
  echo ".ci/docker.sh: starting dockerd --storage-driver=$1 (log: $LOG)"
  nohup dockerd --storage-driver="$1" --iptables=false --bridge=none >"$LOG" 2>&1 &
  local pid=$!
  for _ in $(seq "$WAIT_S"); do
    if docker_ready; then
      echo ".ci/docker.sh: Docker ready ($(docker info -f '{{.ServerVersion}} {{.Driver}}'))"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -5 "$LOG" >&2; return 1; }
    sleep 1
  done
  tail -20 "$LOG" >&2 || true
  die "dockerd (pid $pid) did not answer \`docker info\` within ${WAIT_S}s ($LOG)"
}

pgrep -x dockerd >/dev/null 2>&1 && die "a dockerd is running but \`docker info\` fails: $(docker info 2>&1 | tail -1)"
mkdir -p "$(dirname "$LOG")"
for driver in ${DOCKER_STORAGE_DRIVER:-overlay2 vfs}; do
  start_dockerd "$driver" && exit 0
  echo ".ci/docker.sh: dockerd would not start with $driver" >&2
done
die "dockerd exited with every storage driver tried (${DOCKER_STORAGE_DRIVER:-overlay2 vfs}); see $LOG"
