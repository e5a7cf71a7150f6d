#!/bin/sh
# The official redis image's entrypoint contract on Debian's redis-server.
set -eu

# `IMAGE --requirepass x` or `IMAGE /path/redis.conf` run redis-server with those arguments.
case "${1:-}" in
  -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
  # The official build turns protected mode off by default (a container is reached from
  # outside its own loopback); Debian's keeps it on. Without a config file, an explicit
  # --protected-mode later on the command line still wins.
  case "${2:-}" in
    *.conf) ;;
    *) shift; set -- redis-server --protected-mode no "$@" ;;
  esac
  # Started as root: own the data, then drop to redis (999).
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=999 --regid=999 --init-groups "$0" "$@"
  fi
  um="$(umask)"
  if [ "$um" = 0022 ]; then umask 0077; fi
fi

exec "$@"
