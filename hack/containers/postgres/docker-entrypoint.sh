#!/usr/bin/env bash
# The official postgres image's contract on Debian's PostgreSQL: an empty PGDATA is initialised
# with POSTGRES_USER (default postgres) / POSTGRES_PASSWORD and POSTGRES_DB (default the user),
# then /docker-entrypoint-initdb.d/*.sh|*.sql run once; the server listens on every address and
# clients authenticate with POSTGRES_HOST_AUTH_METHOD (default scram-sha-256).
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR or the contents of the file named by VAR_FILE.
file_env() {
  local var="$1" file_var="${1}_FILE" def="${2:-}"
  if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
    echo "error: both $var and $file_var are set (they are exclusive)" >&2; exit 1
  fi
  local val="$def"
  if [[ -n "${!var:-}" ]]; then val="${!var}"; elif [[ -n "${!file_var:-}" ]]; then val="$(<"${!file_var}")"; fi
  export "$var"="$val"
  unset "$file_var"
}

# `docker run IMAGE -c key=value` means postgres with those options.
if [[ "${1:0:1}" == "-" ]]; then set -- postgres "$@"; fi

if [[ "$1" != postgres ]]; then exec "$@"; fi

mkdir -p "$PGDATA"
# Started as root (docker run without --user): fix ownership, then drop to postgres (999).
if [[ "$(id -u)" == 0 ]]; then
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=999 --regid=999 --init-groups "$BASH_SOURCE" "$@"
fi
chmod 700 "$PGDATA" 2>/dev/null || true

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [[ -z "$POSTGRES_PASSWORD" && "$auth" != trust ]]; then
    cat >&2 <<'MSG'
error: the database is uninitialised and POSTGRES_PASSWORD is not set.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to the superuser's password, or
  POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one (never in production).
MSG
    exit 1
  fi
  echo "initialising $PGDATA for user $POSTGRES_USER, database $POSTGRES_DB"
  initdb_args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth")
  [[ -n "${POSTGRES_INITDB_WALDIR:-}" ]] && initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR")
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments, as upstream
  initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A server reachable only on its socket while the database and the init scripts are made.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >/dev/null
  psql_cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
      *) [[ -e "$f" ]] && echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset POSTGRES_PASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
