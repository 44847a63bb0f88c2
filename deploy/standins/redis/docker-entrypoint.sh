#!/bin/sh
# Like the official image: without a config file, protected mode would refuse every client
# outside the container, so it is switched off (the compose network is the boundary).
set -e
if [ "$1" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
