#!/usr/bin/env bash
# Fill container/wheelhouse/ with every wheel the image installs, so `docker build --network none`
# can `pip install --no-index`. Runs on the host, which must have Python 3.11 on linux x86_64
# (the image's interpreter): pip keeps manylinux wheels and builds the sdists (sagemaker-training
# compiles a small C extension, so the host needs gcc and the Python headers).
#
#   PIP=.venv/bin/pip TORCH_WHEEL=/opt/wheels/torch-2.13.0+cpu-...whl container/make_wheelhouse.sh [MODE]
#
# MODE: deps (third-party wheels), project (the sm-toolkit wheel only), all (default).
set -euo pipefail
MODE="${1:-all}"

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
OUT="${WHEELHOUSE:-$HERE/wheelhouse}"
TORCH_WHEEL="${TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"

die() { echo "make_wheelhouse: $*" >&2; exit 1; }
[ -x "$PIP" ] || die "no pip at $PIP (set PIP=...)"
PYVER=$("$(dirname "$PIP")/python" -c 'import sys;print("%d.%d"%sys.version_info[:2])')
[ "$PYVER" = 3.11 ] || die "host Python is $PYVER; the image runs 3.11 and the wheels must match"
[ "$(uname -m)" = x86_64 ] || die "host is $(uname -m); the image is linux x86_64"
[ -f "$TORCH_WHEEL" ] || die "CPU torch wheel not found: $TORCH_WHEEL (set TORCH_WHEEL=...)"

mkdir -p "$OUT"
case "$MODE" in deps|project|all) ;; *) die "MODE must be deps, project or all, not '$MODE'" ;; esac
if [ "$MODE" != project ]; then
  # torch goes in first, by file and without dependencies, so nothing below can fetch a CUDA build.
  "$PIP" download --no-deps -d "$OUT" "$TORCH_WHEEL" >/dev/null
  # Everything else (torch's own deps included) resolved against that wheel, sdists built to wheels.
  "$PIP" wheel -q -w "$OUT" --find-links "$OUT" \
    -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
fi
if [ "$MODE" != deps ]; then
  # The project itself, without deps (the image's requirements list what it needs at run time).
  rm -f "$OUT"/sm_toolkit-*.whl
  "$PIP" wheel -q --no-deps -w "$OUT" "$ROOT"
fi
if ls "$OUT" | grep -qiE '^nvidia_|^triton-'; then die "a CUDA wheel slipped into $OUT"; fi
echo "make_wheelhouse: $(ls "$OUT" | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
