#!/bin/sh
# The PostgreSQL image's entrypoint, as the official image's for what the stacks use:
#   - as root: owns the data directory (a fresh volume or a bind mount) to postgres, then runs itself
#     again as postgres (setpriv execs: no process stays in between);
#   - an empty data directory: initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD
#     (scram-sha-256), password auth from any address, trust only on the local socket; then
#     CREATE DATABASE POSTGRES_DB (single-user mode: no server listens meanwhile);
#   - execs the command, `postgres` by default, which listens on every address of the container.
# Any other command runs as given (e.g. psql).
set -eu

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups sh "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?is required to create the database (the data directory $PGDATA is empty)}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    umask 077
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --pgdata="$PGDATA"
    rm -f "$pwfile"
    printf '\n# the compose network: any address, with the password\nhost all all all scram-sha-256\n' \
        >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
        db_sql=$(printf '%s' "$db" | sed 's/"/""/g')
        printf 'CREATE DATABASE "%s";\n' "$db_sql" | postgres --single -D "$PGDATA" postgres >/dev/null
        # Single-user mode exits 0 even when a statement fails: connecting to the database proves it.
        echo 'SELECT 1;' | postgres --single -D "$PGDATA" "$db" >/dev/null
        echo "postgres-entrypoint: created database $db (owner $user)"
    fi
    echo "postgres-entrypoint: initialised $PGDATA"
fi

exec "$@"
