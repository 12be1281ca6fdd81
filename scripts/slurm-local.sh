#!/usr/bin/env bash
# A real single-node SLURM cluster on this Debian machine, for tests and demos.
#
#   scripts/slurm-local.sh start    install what is missing, write config, start daemons, wait until ready
#   scripts/slurm-local.sh stop     cancel jobs, stop daemons (state and accounting are kept)
#   scripts/slurm-local.sh status   sinfo/squeue; exit 0 when up, 1 when not
#   scripts/slurm-local.sh env      print the export line for users
#
# `start` prints `export SLURM_CONF=...` on stdout and progress on stderr, so
# `eval "$(scripts/slurm-local.sh start)"` works.  Everything (config, state,
# database, logs) lives under SLURM_LOCAL_DIR (default /var/tmp/sslight-slurm).
# Runs as root, without systemd, cgroups or Docker: each daemon is started in
# the background with its pid file under the local dir.
set -euo pipefail

# munged refuses group/world-writable files; CI runners sometimes use umask 002.
umask 022
# The daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="/usr/sbin:/sbin:$PATH"

DIR="${SLURM_LOCAL_DIR:-/var/tmp/sslight-slurm}"
# A port of our own so a system MariaDB on 3306, if any, is left alone.
DB_PORT="${SLURM_LOCAL_DB_PORT:-3307}"
CLUSTER=sslight
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)

ETC="$DIR/etc"
RUN="$DIR/run"
LOG="$DIR/log"
CONF="$ETC/slurm.conf"
MUNGE_SOCKET="$RUN/munge.socket"
DB_SOCKET="$RUN/mysqld.sock"
# Only listens on 127.0.0.1 and only guards the accounting database.
DB_PASS=slurm-local

# Every Slurm command below (and slurmdbd, which finds slurmdbd.conf next to
# slurm.conf) must use our config rather than /etc/slurm.
export SLURM_CONF="$CONF"

T0=$SECONDS

say() { printf '[slurm-local] %s\n' "$*" >&2; }

# Print why, the end of the log that explains it, and fail.
die() {
    local msg=$1 log=${2:-}
    say "FAILED: $msg"
    if [[ -n "$log" && -s "$log" ]]; then
        say "last lines of $log:"
        tail -n 20 "$log" >&2
    fi
    exit 1
}

not() { ! "$@"; }

# wait_until SECONDS CMD...: poll CMD every 0.5 s until it succeeds or time runs out.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# wait_daemon NAME SECONDS CMD...: like wait_until, but give up early once
# NAME has not been running for 5 s (it died, e.g. on a busy port; its log
# says why).  The grace covers the moment before a daemon writes its pid file.
wait_daemon() {
    local name=$1 deadline=$((SECONDS + $2)) last_seen=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if running "$name"; then last_seen=$SECONDS; fi
        ((SECONDS < deadline && SECONDS - last_seen < 5)) || return 1
        sleep 0.5
    done
}

# pid_is NAME PID: PID is a live (not zombie) process called NAME.  A pid file
# alone can outlive its process (reboot, kill -9) and the pid be reused.
pid_is() {
    local stat
    [[ "$2" =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$2/stat" 2>/dev/null) || return 1
    # /proc/PID/stat is "PID (COMM) STATE ..."; Z and X are dead.
    [[ "$stat" == "$2 ($1) "* && "${stat#"$2 ($1) "}" != [ZX]* ]]
}

running() {
    local pid
    pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
    pid_is "$1" "$pid"
}

# Daemons inherit open descriptors; fd 9 holds our flock, and a daemon keeping
# it would block every later start/stop.  Run daemon launches through this.
detached() { "$@" </dev/null 9>&-; }

DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do running "$d" || return 1; done
}

node_ready() {
    # idle/mixed/allocated are all fine; a trailing * or ~ means not responding.
    sinfo -h -N -o '%T' 2>/dev/null | grep -Eqx 'idle|mixed|allocated|completing'
}

print_env() { printf 'export SLURM_CONF=%s\n' "$CONF"; }

need_root() {
    [[ $(id -u) == 0 ]] || die "must run as root (the daemons run as root without systemd)"
}

# Serialise start/stop so parallel test workers calling `start` do not race.
take_lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock 9
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        say "packages: present"
        return
    fi
    local t=$SECONDS log="$LOG/apt.log" policy=/usr/sbin/policy-rc.d made_policy=0
    # Package scripts would start the system-wide services (MariaDB on 3306,
    # munge, slurm) through invoke-rc.d; exit 101 in policy-rc.d forbids that,
    # as Debian container images do.  We only add it when absent.
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local ok=0 apt=(apt-get -y -q -o DPkg::Lock::Timeout=120)
    export DEBIAN_FRONTEND=noninteractive
    # Try with the current lists first (fast); refresh them only if that fails,
    # as on a fresh image whose lists are empty.  The lock timeout waits out
    # another apt run instead of failing on it.
    if "${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
        { "${apt[@]}" update >>"$log" 2>&1 &&
            "${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }; then
        ok=1
    fi
    if ((made_policy)); then rm -f "$policy"; fi
    ((ok)) || die "apt-get install ${missing[*]}" "$log"
    say "packages: installed ${missing[*]} ($((SECONDS - t))s)"
}

write_config() {
    local hw node_line host cpus mem
    # slurmd -C prints this machine as a NodeName line (hostname, CPUs,
    # sockets/cores/threads, RealMemory); the second line is UpTime.
    hw=$(slurmd -C 2>>"$LOG/setup.log") || die "slurmd -C" "$LOG/setup.log"
    node_line=$(grep -m1 '^NodeName=' <<<"$hw") || die "slurmd -C printed no NodeName line"
    host=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node_line")
    cpus=$(grep -oE 'CPUs=[0-9]+' <<<"$node_line" | cut -d= -f2)
    mem=$(grep -oE 'RealMemory=[0-9]+' <<<"$node_line" | cut -d= -f2)

    local tmp="$CONF.tmp"
    cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh; rewritten on every start.
ClusterName=$CLUSTER
# NodeAddr/SlurmctldHost addresses are loopback so the hostname need not resolve.
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A munged of our own; cred_expire=5 (default 120) lets requeued jobs start again within seconds.
AuthInfo=cred_expire=5,socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups here: track processes through /proc and bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
# Accounting through slurmdbd so sacct works (submitit reads job states with it).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# For slurmdbd connections the munge socket is taken from here, not from AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
# Schedule every 2 s and give jobs 5 s between SIGTERM and SIGKILL, so tests stay fast.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
JobRequeue=1
# A node that was down (daemons restarted) comes back as soon as slurmd registers.
ReturnToService=2
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$tmp" "$CONF"

    # slurmdbd insists on mode 600 because the file holds the database password.
    tmp="$ETC/slurmdbd.conf.tmp"
    (
        umask 077
        cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh; rewritten on every start.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
    mv "$tmp" "$ETC/slurmdbd.conf"
    say "config: $CONF (node $host, $cpus CPUs, ${mem} MB)"
}

munge_works() { munge --socket="$MUNGE_SOCKET" -n </dev/null | unmunge --socket="$MUNGE_SOCKET"; }

start_munged() {
    local log="$LOG/munged.log"
    if ! running munged; then
        [[ -s "$DIR/munge/munge.key" ]] ||
            mungekey --create --keyfile="$DIR/munge/munge.key" >>"$LOG/setup.log" 2>&1 ||
            die "mungekey" "$LOG/setup.log"
        chmod 600 "$DIR/munge/munge.key"
        rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" # stale after a crash or reboot
        # munged daemonises itself; stdio goes to the log so no caller's pipe stays open.
        detached munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
            --pid-file="$RUN/munged.pid" --log-file="$log" --seed-file="$DIR/munge/munged.seed" \
            >>"$log" 2>&1 || die "munged did not start" "$log"
    fi
    wait_daemon munged 15 munge_works || die "munge credentials do not round-trip" "$log"
    say "munged: up"
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "$1"; }

start_mariadb() {
    local log="$LOG/mariadb.log"
    if [[ ! -d "$DIR/mysql/mysql" ]]; then
        rm -rf "$DIR/mysql"
        mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" \
            --auth-root-authentication-method=socket --skip-test-db >>"$log" 2>&1 ||
            die "mariadb-install-db" "$log"
    fi
    if ! running mariadbd; then
        # mariadbd does not daemonise: `setsid -f` forks it into a session of
        # its own, so neither a background shell of ours nor the caller's
        # terminal or CI step stays attached to it.  The InnoDB sizes are the
        # least slurmdbd accepts without logging "not recommended values".
        detached setsid -f mariadbd --no-defaults --user=root --datadir="$DIR/mysql" \
            --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
            --skip-name-resolve --pid-file="$RUN/mariadbd.pid" --log-error="$log" \
            --innodb-buffer-pool-size=512M \
            --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
            >>"$log" 2>&1 || die "mariadbd did not start" "$log"
    fi
    wait_daemon mariadbd 60 db_sql 'SELECT 1' || die "mariadb did not answer on $DB_SOCKET" "$log"
    # mariadbd writes it 0660; `status` run by other users should see it too.
    chmod 644 "$RUN/mariadbd.pid"
    # slurmdbd connects over TCP (it has no socket option), so the user is for 127.0.0.1.
    db_sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" >>"$log" 2>&1 ||
        die "creating the slurm database user" "$log"
    say "mariadb: up (127.0.0.1:$DB_PORT)"
}

start_slurmdbd() {
    local log="$LOG/slurmdbd.log"
    if ! running slurmdbd; then
        detached slurmdbd >>"$log" 2>&1 || die "slurmdbd did not start" "$log"
    fi
    # The first start creates the accounting tables, which takes a while.
    wait_daemon slurmdbd 90 sacctmgr -n list cluster || die "slurmdbd does not answer" "$log"
    say "slurmdbd: up"
}

# sacctmgr refuses duplicates, so add only what is missing; -i answers its prompt.
register_accounting() {
    local log="$LOG/setup.log"
    if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>>"$log")" ]]; then
        sacctmgr -i add cluster "$CLUSTER" >>"$log" 2>&1 || die "sacctmgr add cluster" "$log"
    fi
    if [[ -z "$(sacctmgr -n -P list account root format=account 2>>"$log")" ]]; then
        sacctmgr -i add account root Cluster="$CLUSTER" >>"$log" 2>&1 || die "sacctmgr add account" "$log"
    fi
    if [[ -z "$(sacctmgr -n -P list user root format=user 2>>"$log")" ]]; then
        sacctmgr -i add user root Account=root Cluster="$CLUSTER" >>"$log" 2>&1 ||
            die "sacctmgr add user" "$log"
    fi
    say "accounting: cluster $CLUSTER, account root, user root"
}

start_slurmctld() {
    local log="$LOG/slurmctld.log"
    if ! running slurmctld; then
        detached slurmctld >>"$log" 2>&1 || die "slurmctld did not start" "$log"
    fi
    wait_daemon slurmctld 30 scontrol ping || die "slurmctld does not answer" "$log"
    say "slurmctld: up"
}

start_slurmd() {
    local log="$LOG/slurmd.log"
    if ! running slurmd; then
        detached slurmd >>"$log" 2>&1 || die "slurmd did not start" "$log"
    fi
    wait_daemon slurmd 60 node_ready || die "node not idle: $(sinfo -h -N -o '%N %T %E' 2>&1)" "$log"
    wait_until 30 sacct -n -X || die "sacct does not answer" "$LOG/slurmdbd.log"
    say "slurmd: up, node $(sinfo -h -N -o '%N %T')"
}

cmd_start() {
    need_root
    # Unix socket paths are limited to 108 bytes; a deep SLURM_LOCAL_DIR breaks munged.
    ((${#MUNGE_SOCKET} < 100)) || die "SLURM_LOCAL_DIR is too long for a socket path: $DIR"
    take_lock
    if all_running && scontrol ping >/dev/null 2>&1 && node_ready; then
        say "already up"
        print_env
        return
    fi
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state" "$DIR/spool" "$DIR/munge"
    chmod 700 "$DIR/munge"
    install_packages
    write_config
    start_munged
    start_mariadb
    start_slurmdbd
    register_accounting
    start_slurmctld
    start_slurmd
    say "ready in $((SECONDS - T0))s; logs in $LOG"
    print_env
}

# stop_daemon NAME: SIGTERM, wait up to 20 s for a clean exit, then SIGKILL.
stop_daemon() {
    local name=$1 pid
    running "$name" || return 0
    pid=$(<"$RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 20 not pid_is "$name" "$pid"; then
        say "$name did not exit on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
}

no_jobs() { [[ -z "$(squeue -h -o %A 2>/dev/null)" ]]; }

cmd_stop() {
    need_root
    take_lock
    # Cancel jobs first so no job processes outlive slurmd; slurmctld records
    # them as CANCELLED and keeps its state for the next start.
    if running slurmctld && scontrol ping >/dev/null 2>&1; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086  # one argument per job id
            scancel $jobs 2>/dev/null || true
            wait_until 20 no_jobs || say "jobs still listed: $(squeue -h -o '%A %T' | tr '\n' ' ')"
        fi
    fi
    local d
    for d in slurmd slurmctld slurmdbd mariadbd munged; do stop_daemon "$d"; done
    say "stopped"
}

cmd_status() {
    local d up=0 state
    for d in "${DAEMONS[@]}"; do
        if running "$d"; then state=up; else state=down up=1; fi
        printf '%-10s %s\n' "$d" "$state"
    done
    if running slurmctld && scontrol ping >/dev/null 2>&1; then
        sinfo
        squeue
        node_ready || up=1
    else
        up=1
    fi
    return "$up"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) print_env ;;
    *)
        echo "usage: $0 start|stop|status|env   (SLURM_LOCAL_DIR=$DIR)" >&2
        exit 2
        ;;
esac
