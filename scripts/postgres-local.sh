#!/usr/bin/env bash
# A private PostgreSQL server on this Debian machine, for the registry and Optuna at scale.
#
#   scripts/postgres-local.sh start         install what is missing, initdb once, start, wait until ready
#   scripts/postgres-local.sh stop          stop the server (data is kept)
#   scripts/postgres-local.sh status        exit 0 when the server answers, 1 when not
#   scripts/postgres-local.sh url [DB]      print the SQLAlchemy URL of database DB (default sslight)
#
# `start` prints the URL on stdout and progress on stderr, so
# `export SSLIGHT_DB_URL="$(scripts/postgres-local.sh start)"` works.  Everything (data, socket,
# log) lives under PG_LOCAL_DIR (default /var/tmp/sslight-pg).  The server listens on
# 127.0.0.1:PG_LOCAL_PORT (default 5433, so a system cluster on 5432 is left alone) and runs as
# the `postgres` user, since initdb and postgres refuse root.  Role `sslight` (password
# PG_LOCAL_PASSWORD, default sslight-local) owns databases `sslight` (the registry), `optuna`,
# `mlflow` and `sslight_test`, and may create more (the tests make one per test).  The registry,
# Optuna and MLflow each need a database of their own: all three keep their Alembic revision in
# a table named alembic_version.
set -euo pipefail
umask 022

DIR="${PG_LOCAL_DIR:-/var/tmp/sslight-pg}"
PORT="${PG_LOCAL_PORT:-5433}"
ROLE=sslight
PASSWORD="${PG_LOCAL_PASSWORD:-sslight-local}"
DATABASES=(sslight optuna mlflow sslight_test)
DATA="$DIR/data"
RUN="$DIR/run"
LOG="$DIR/log"
OS_USER=postgres

say() { printf '[postgres-local] %s\n' "$*" >&2; }

die() {
    local msg=$1 log=${2:-}
    say "FAILED: $msg"
    if [[ -n "$log" && -s "$log" ]]; then
        say "last lines of $log:"
        tail -n 20 "$log" >&2
    fi
    exit 1
}

url() { printf 'postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$PASSWORD" "$PORT" "${1:-sslight}"; }

# The newest installed server's binaries (Debian keeps them out of PATH).
bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] && printf '%s\n' "$dir"
}

as_postgres() { runuser -u "$OS_USER" -- "$@"; }

answers() { [[ -n "${BIN:-}" ]] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

install_packages() {
    if BIN=$(bindir); then
        return
    fi
    mkdir -p "$LOG"
    local log="$LOG/apt.log" policy=/usr/sbin/policy-rc.d made_policy=0 ok=0
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=120)
    # The package would start the system cluster on 5432; exit 101 in policy-rc.d forbids that.
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if "${apt[@]}" install --no-install-recommends postgresql >>"$log" 2>&1 ||
        { "${apt[@]}" update >>"$log" 2>&1 &&
            "${apt[@]}" install --no-install-recommends postgresql >>"$log" 2>&1; }; then
        ok=1
    fi
    if ((made_policy)); then rm -f "$policy"; fi
    ((ok)) || die "apt-get install postgresql" "$log"
    BIN=$(bindir) || die "postgresql installed but no pg_ctl under /usr/lib/postgresql"
    say "packages: installed postgresql"
}

init_cluster() {
    [[ -f "$DATA/PG_VERSION" ]] && return
    mkdir -p "$DATA"
    chown "$OS_USER:" "$DIR" "$DATA" "$RUN" "$LOG"
    chmod 700 "$DATA"
    # Local socket connections (ours, as postgres) are trusted; TCP needs a password.
    as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$LOG/initdb.log" 2>&1 ||
        as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --locale=C >>"$LOG/initdb.log" 2>&1 ||
        die "initdb" "$LOG/initdb.log"
    cat >>"$DATA/postgresql.conf" <<EOF
# scripts/postgres-local.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
fsync = on
EOF
    say "initdb: $DATA"
}

psql_admin() { as_postgres "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -qAt "$@"; }

create_role_and_databases() {
    local db
    if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]]; then
        psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
    else
        psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
    fi
    for db in "${DATABASES[@]}"; do
        if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
            psql_admin -c "CREATE DATABASE $db OWNER $ROLE"
        fi
    done
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and switches to $OS_USER)"
    mkdir -p "$DIR" "$RUN" "$LOG"
    exec 9>"$DIR/.lock"
    flock 9
    install_packages
    id "$OS_USER" >/dev/null 2>&1 || die "no $OS_USER user (the postgresql package creates it)"
    init_cluster
    chown "$OS_USER:" "$RUN" "$LOG"
    if ! answers; then
        # fd 9 (the lock) must not stay open in the server, or the next start waits forever.
        as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG/postgres.log" -w -t 60 start \
            </dev/null >/dev/null 9>&- ||
            die "pg_ctl start" "$LOG/postgres.log"
    fi
    create_role_and_databases
    say "ready on 127.0.0.1:$PORT; log $LOG/postgres.log"
    url sslight
}

cmd_stop() {
    [[ $(id -u) == 0 ]] || die "must run as root (it switches to $OS_USER)"
    BIN=$(bindir) || return 0
    [[ -f "$DATA/postmaster.pid" ]] || { say "not running"; return 0; }
    as_postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    say "stopped"
}

cmd_status() {
    BIN=$(bindir) || { say "postgresql is not installed"; return 1; }
    if answers; then
        say "up on 127.0.0.1:$PORT"
        return 0
    fi
    say "down"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) url "${2:-sslight}" ;;
    *)
        echo "usage: $0 start|stop|status|url [DATABASE]   (PG_LOCAL_DIR=$DIR, port $PORT)" >&2
        exit 2
        ;;
esac
