#!/bin/sh
# The image's entrypoint. With no arguments, or options only, it serves the API:
#   docker run flight-delay                    -> flight-delay serve
#   docker run flight-delay --workers 4        -> flight-delay serve --workers 4
# Anything else runs as given (docker run flight-delay flight-delay migrate, ... python src/model_dummy.py).
# `exec` replaces this shell: the program (gunicorn's master, for serve) is PID 1 and gets SIGTERM.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec flight-delay serve "$@"
fi
exec "$@"
