#!/bin/sh
# Exec-form ENTRYPOINT of the training image. tini (Debian package) becomes PID 1: it reaps
# orphans and passes signals to the launcher, which forwards them to the training processes.
# Bases without tini (e.g. an AWS DLC) run the launcher as PID 1; it reaps on its own then.
if command -v tini >/dev/null 2>&1; then
  exec tini -- python3 -m sm_toolkit.runtime.launcher "$@"
fi
exec python3 -m sm_toolkit.runtime.launcher "$@"
