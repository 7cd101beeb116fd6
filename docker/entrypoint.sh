#!/bin/sh
# Entrypoint of the Kairos image: runs the `kairos` console script with the container's
# arguments (default `worker`).
#
# Workers forward requests to the worker that owns a key, at its KAIROS_CANONICAL_URL. When it is
# unset, it becomes this container's address (http://<ip>:<KAIROS_WEB_PORT>), which the other
# replicas of a scaled service can reach; Kairos's own default (http://WEB_HOST:WEB_PORT, i.e.
# 0.0.0.0) could not be.
set -eu

if [ -z "${KAIROS_CANONICAL_URL:-}" ]; then
    addr="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))' \
        2>/dev/null || true)"
    if [ -z "$addr" ]; then
        addr="$(hostname 2>/dev/null || cat /etc/hostname)"
    fi
    KAIROS_CANONICAL_URL="http://${addr}:${KAIROS_WEB_PORT:-6066}"
    export KAIROS_CANONICAL_URL
fi

exec kairos "$@"
