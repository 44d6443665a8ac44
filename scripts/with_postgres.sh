#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL server: scripts/with_postgres.sh CMD [ARG...]
#
# Starts a fresh cluster in a temporary folder, listening on 127.0.0.1 only (a free port; its unix
# socket inside the folder), creates a role and a database, exports TEST_DATABASE_URL for CMD (and
# TEST_PGDATA, TEST_PG_BINDIR, TEST_PG_OWNER to restart the server), runs CMD, then stops the server
# and removes the folder, whatever happens. Exits with CMD's status.
# Uses Debian's PostgreSQL (/usr/lib/postgresql/*/bin, or PG_BINDIR); installs it with apt-get when
# it is missing and we are root. PostgreSQL refuses to run as root, so as root the server runs as
# the `postgres` system user that Debian's package creates; CMD still runs as the caller.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARG...]  (CMD sees TEST_DATABASE_URL)" >&2
    exit 2
fi

ROLE=flight_delay
DATABASE=flight_delay

log() { echo "with_postgres: $*" >&2; }

# The newest installed major version's binaries.
find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    if [ -d /usr/lib/postgresql ]; then
        find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin | sort -V | tail -n 1
    fi
}

install_postgres() {
    if [ "$(id -u)" -ne 0 ]; then
        log "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin) and we are not root:"
        log "install it (apt-get install postgresql) or set PG_BINDIR to its bin folder."
        exit 1
    fi
    log "installing Debian's postgresql with apt-get"
    apt-get update -qq
    # Debian's package may start its own default cluster; ours is separate and on another port.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# Runs a command as the user that owns the cluster (postgres when we are root, else ourselves),
# from the cluster's folder: the caller's may be closed to that user (e.g. a checkout under /root).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$WORKDIR" && runuser -u postgres -- "$@")
    else
        (cd "$WORKDIR" && "$@")
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
    install_postgres
    BINDIR="$(find_bindir)"
fi
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
    log "no PostgreSQL binaries found under /usr/lib/postgresql/*/bin after installing"
    exit 1
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "running as root needs the 'postgres' system user (Debian's postgresql package creates it)"
    exit 1
fi

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/with-postgres.XXXXXX")"
PGDATA="$WORKDIR/data"
SERVER_LOG="$WORKDIR/server.log"
PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
STARTED=0

cleanup() {
    if [ "$STARTED" -eq 1 ]; then
        as_owner "$BINDIR/pg_ctl" stop -D "$PGDATA" -m fast -w >/dev/null 2>&1 || true
    fi
    rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$WORKDIR"
fi
chmod 700 "$WORKDIR"

# Only the owner can reach the socket folder, so trusting the socket admits nobody else;
# TCP on loopback needs the password.
as_owner "$BINDIR/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$WORKDIR/initdb.log" 2>&1 || {
    cat "$WORKDIR/initdb.log" >&2
    log "initdb failed"
    exit 1
}

# fsync off: a throwaway test cluster, and CREATE DATABASE per test is much faster without it.
# PG_DURABLE=1 keeps a real server's settings instead (every commit on disk before it returns), for
# benchmarks whose figures must not flatter PostgreSQL.
if [ "${PG_DURABLE:-0}" = 1 ]; then
    DURABILITY="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
else
    DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

# The chosen port may be taken between the choice and the bind: try a few.
for attempt in 1 2 3 4 5; do
    PORT="$(free_port)"
    # A zone other than UTC, so that the tests prove timestamps come back in UTC whatever the server's.
    # No autovacuum: a worker vacuuming a test's database makes DROP DATABASE ... WITH (FORCE) fail
    # (the test role may not terminate it), and databases live for one test anyway.
    if as_owner "$BINDIR/pg_ctl" start -D "$PGDATA" -l "$SERVER_LOG" -w -t 60 -o "\
-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$WORKDIR \
-c max_connections=300 $DURABILITY \
-c autovacuum=off -c timezone=America/New_York" >/dev/null; then
        STARTED=1
        break
    fi
    log "start on port $PORT failed (attempt $attempt)"
done
if [ "$STARTED" -ne 1 ]; then
    cat "$SERVER_LOG" >&2 || true
    log "PostgreSQL did not start"
    exit 1
fi

as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORKDIR" -p "$PORT" -U postgres -d postgres <<SQL
CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
GRANT pg_signal_backend TO $ROLE;
CREATE DATABASE $DATABASE OWNER $ROLE;
SQL

export TEST_DATABASE_URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
# For commands that restart the server (bench/soak.py): `pg_ctl restart -D "$TEST_PGDATA"`, run as
# TEST_PG_OWNER from the cluster's folder, reuses the options it was started with.
export TEST_PGDATA="$PGDATA" TEST_PG_BINDIR="$BINDIR" TEST_PG_OWNER="$(if [ "$(id -u)" -eq 0 ]; then echo postgres; fi)"
log "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $WORKDIR)"

set +e
"$@"
status=$?
set -e
exit "$status"
