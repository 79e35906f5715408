#!/bin/sh
# /usr/local/bin/graft in the container image: runs the real binary as the
# unprivileged `graft` user (uid 10001) whoever starts it.
#
# Fly.io volumes and bind mounts arrive owned by root, so an image that
# starts as `graft` could not create its database there. Started as root,
# this hands the data folder to `graft` once, then drops root for good.
# `docker exec … graft token create` and `fly ssh console -C "graft …"` come
# through here too, so CLI commands never leave root-owned files behind.
set -eu
real=/usr/local/lib/graft/graft
if [ "$(id -u)" = 0 ]; then
  data="${GRAFT_DATA_DIR:-/data}"
  mkdir -p "$data"
  if [ "$(stat -c %u "$data")" != 10001 ]; then
    chown -R 10001:10001 "$data"
  fi
  exec setpriv --reuid=10001 --regid=10001 --clear-groups -- "$real" "$@"
fi
exec "$real" "$@"
