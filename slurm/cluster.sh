#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for specflow's tests and benchmarks.
#
#   bash slurm/cluster.sh up      install what is missing, start every daemon, wait until
#                                 the cluster accepts jobs (a no-op when it already does)
#   bash slurm/cluster.sh down    stop the daemons this script started (by their recorded pids)
#   bash slurm/cluster.sh status  show each daemon, sinfo; exit 0 only when jobs are accepted
#
# Daemons: mariadbd (private datadir, unix socket only) -> munged -> slurmdbd -> slurmctld
# -> slurmd. They run without systemd, detached with setsid; their pids are recorded under
# the state dir ($SPECFLOW_SLURM_STATE, default /var/lib/specflow-slurm) and `down` stops
# exactly those pids. The SLURM config is rendered from slurm/slurm.conf.in into
# /etc/slurm/slurm.conf with the CPU and memory layout reported by `slurmd -C`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${SPECFLOW_SLURM_STATE:-/var/lib/specflow-slurm}"
CONF_DIR=/etc/slurm
CLUSTER=specflow
DB_USER=slurm
DB_PASS=specflow-local-accounting
TIMEOUT="${SPECFLOW_SLURM_TIMEOUT:-120}"
DAEMONS=(mariadbd munged slurmdbd slurmctld slurmd)
PACKAGES=(slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client)
MYSQL_SOCK="$STATE/mysqld/mysqld.sock"

log() { printf '[slurm] %s\n' "$*" >&2; }
die() { printf '[slurm] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- pids

pid_file() { echo "$STATE/pids/$1.pid"; }

# The recorded pid of daemon $1 if that process is alive and still is that daemon.
alive_pid() {
    local f pid comm
    f="$(pid_file "$1")"
    [[ -s "$f" ]] || return 1
    pid="$(<"$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/comm" ]] || return 1
    comm="$(<"/proc/$pid/comm")"
    [[ "$comm" == "$1" ]] || return 1
    # a zombie is not alive
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]] || return 1
    echo "$pid"
}

is_alive() { alive_pid "$1" >/dev/null; }

# start_daemon NAME CMD... : run CMD detached in its own session and record its pid.
# The command must exec into the daemon itself (foreground mode), so $! is the daemon.
start_daemon() {
    local name="$1" pid
    shift
    mkdir -p "$STATE/pids" "$STATE/log"
    # fd 9 is the lock of this script: daemons must not inherit (and so keep holding) it
    setsid "$@" >>"$STATE/log/$name.out" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$(pid_file "$name")"
    # give exec a moment, then make sure it became the daemon and did not die at once
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        if is_alive "$name"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    is_alive "$name" || die "$name did not start; see $STATE/log/$name.out and $STATE/log/"
}

stop_daemon() {
    local name="$1" pid i
    if pid="$(alive_pid "$name")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            is_alive "$name" || break
            sleep 0.2
        done
        if is_alive "$name"; then
            log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$(pid_file "$name")"
}

# wait_for DESCRIPTION SECONDS CMD... : poll CMD until it succeeds.
wait_for() {
    local what="$1" limit="$2" start
    shift 2
    start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - start >= limit)); then
            return 1
        fi
        sleep 0.5
    done
    log "$what ($((SECONDS - start)) s)"
}

# ---------------------------------------------------------------- install

install_packages() {
    local missing=0 cmd
    for cmd in slurmctld slurmd slurmdbd sacct sbatch sacctmgr munged munge unmunge \
        mariadbd mariadb mariadb-install-db setpriv; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    [[ $EUID -eq 0 ]] || die "installing SLURM needs root"
    log "installing ${PACKAGES[*]} (Debian packages)"
    local guard=0
    # keep the packages' init scripts from starting daemons: this script starts them
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    local rc=0
    {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${PACKAGES[@]}"
    } >"/tmp/specflow-slurm-apt.log" 2>&1 || rc=$?
    ((guard)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get failed (exit $rc); see /tmp/specflow-slurm-apt.log"
}

# ---------------------------------------------------------------- config

node_layout() {
    # e.g. "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    slurmd -C | head -n 1 | tr ' ' '\n' | grep -E \
        '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' '
}

render() {
    # render TEMPLATE: print it with the placeholders filled in
    local layout cpus mem defmem
    layout="$(node_layout)"
    cpus="$(sed -nE 's/.*CPUs=([0-9]+).*/\1/p' <<<"$layout")"
    mem="$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$layout")"
    [[ -n "$cpus" && -n "$mem" ]] || die "could not read the node layout from 'slurmd -C'"
    # jobs that ask for no memory get a modest share, so several run side by side
    defmem=$((mem / cpus))
    ((defmem > 1024)) && defmem=1024
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@NODE_LAYOUT@|${layout% }|g" -e "s|@DEFMEM@|$defmem|g" \
        -e "s|@DB_USER@|$DB_USER|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1"
}

# write_config: returns 0 if a config file changed, 1 if all were already current
write_config() {
    local changed=1 new
    mkdir -p "$CONF_DIR"
    new="$(render "$HERE/slurm.conf.in")"
    if [[ ! -f "$CONF_DIR/slurm.conf" ]] || [[ "$new" != "$(<"$CONF_DIR/slurm.conf")" ]]; then
        printf '%s\n' "$new" >"$CONF_DIR/slurm.conf"
        chmod 644 "$CONF_DIR/slurm.conf"
        changed=0
    fi
    new="$(render "$HERE/slurmdbd.conf.in")"
    if [[ ! -f "$CONF_DIR/slurmdbd.conf" ]] || [[ "$new" != "$(<"$CONF_DIR/slurmdbd.conf")" ]]
    then
        printf '%s\n' "$new" >"$CONF_DIR/slurmdbd.conf"
        changed=0
    fi
    # slurmdbd refuses a config that others can read (it holds the database password)
    chown root:root "$CONF_DIR/slurmdbd.conf"
    chmod 600 "$CONF_DIR/slurmdbd.conf"
    return $changed
}

prepare_dirs() {
    mkdir -p "$STATE"/{pids,log,run,slurmctld,slurmd,mysqld}
    chmod 755 "$STATE"
    chown mysql:mysql "$STATE/mysqld"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating a munge key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
}

# ---------------------------------------------------------------- checks

db_ready() { mariadb --no-defaults -S "$MYSQL_SOCK" -u root -e 'SELECT 1'; }
munge_ready() { munge -n </dev/null | unmunge; }
dbd_ready() { sacctmgr -n -P list cluster format=cluster; }
sacct_ready() { sacct -n -X -S now-1minutes -o jobid; }

node_state() { sinfo -h -N -n "$(hostname -s)" -o '%T' 2>/dev/null | head -n 1; }

node_usable() {
    case "$(node_state)" in
    idle | mixed | allocated | completing | "allocated+" | "idle+" | "mixed+") return 0 ;;
    *) return 1 ;;
    esac
}

accepting_jobs() {
    is_alive slurmctld && is_alive slurmd && is_alive slurmdbd && is_alive munged &&
        is_alive mariadbd && node_usable && sacct_ready >/dev/null 2>&1
}

# ---------------------------------------------------------------- start

start_mariadb() {
    is_alive mariadbd && return 0
    if [[ ! -d "$STATE/mysql/mysql" ]]; then
        log "initialising the accounting database in $STATE/mysql"
        rm -rf "$STATE/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$STATE/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    rm -f "$MYSQL_SOCK"
    log "starting mariadbd"
    start_daemon mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --socket="$MYSQL_SOCK" --pid-file="$STATE/mysqld/mariadbd.pid" --skip-networking \
        --log-error="$STATE/log/mariadbd.log" --innodb-buffer-pool-size=64M
    wait_for "mariadbd answers" "$TIMEOUT" db_ready ||
        die "mariadbd did not answer within $TIMEOUT s; see $STATE/log/mariadbd.log"
    mariadb --no-defaults -S "$MYSQL_SOCK" -u root -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';" ||
        die "could not create the accounting database"
}

start_munge() {
    is_alive munged && return 0
    log "starting munged"
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground
    wait_for "munge works" "$TIMEOUT" munge_ready ||
        die "munge does not work after $TIMEOUT s; see /var/log/munge/munged.log"
}

start_slurmdbd() {
    is_alive slurmdbd && return 0
    log "starting slurmdbd"
    # libmariadb takes its default socket from MYSQL_UNIX_PORT
    MYSQL_UNIX_PORT="$MYSQL_SOCK" start_daemon slurmdbd env MYSQL_UNIX_PORT="$MYSQL_SOCK" \
        slurmdbd -D
    wait_for "slurmdbd answers" "$TIMEOUT" dbd_ready ||
        die "slurmdbd did not answer within $TIMEOUT s; see $STATE/log/slurmdbd.log"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "could not register the cluster"
    fi
}

start_slurm() {
    if ! is_alive slurmctld; then
        log "starting slurmctld"
        start_daemon slurmctld slurmctld -D
    fi
    if ! is_alive slurmd; then
        log "starting slurmd"
        start_daemon slurmd slurmd -D
    fi
}

wait_until_ready() {
    local start=$SECONDS resumed=0 state
    while ! accepting_jobs; do
        if ((SECONDS - start >= TIMEOUT)); then
            status >&2 || true
            die "the cluster does not accept jobs after $TIMEOUT s; logs are in $STATE/log"
        fi
        local d
        for d in "${DAEMONS[@]}"; do
            is_alive "$d" || die "$d died while starting; see $STATE/log/"
        done
        state="$(node_state)"
        if [[ "$state" =~ ^(down|drain|drained|draining) ]] && ((!resumed)) &&
            ((SECONDS - start >= 3)); then
            log "node is $state; resuming it"
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
            resumed=1
        fi
        sleep 0.5
    done
    log "cluster is up: node $(node_state), accounting works ($((SECONDS - start)) s)"
}

up() {
    install_packages
    prepare_dirs
    local reconfigured=0
    write_config && reconfigured=1
    if ((!reconfigured)) && accepting_jobs; then
        log "already up"
        status
        return
    fi
    if ((reconfigured)); then
        log "configuration written to $CONF_DIR"
        # daemons started with an older config pick the new one up by restarting
        stop_daemon slurmd
        stop_daemon slurmctld
        stop_daemon slurmdbd
    fi
    start_mariadb
    start_munge
    start_slurmdbd
    start_slurm
    wait_until_ready
    status
}

down() {
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[$i]}"
    done
    log "down"
}

status() {
    local d pid ok=0
    for d in "${DAEMONS[@]}"; do
        if pid="$(alive_pid "$d")"; then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"
            ok=1
        fi
    done
    if is_alive slurmctld; then
        sinfo 2>&1 || true
    fi
    if ((ok == 0)) && accepting_jobs; then
        echo "cluster accepts jobs"
        return 0
    fi
    echo "cluster does not accept jobs"
    return 1
}

main() {
    local cmd="${1:-status}"
    case "$cmd" in
    up | down | status) ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
    esac
    if [[ "$cmd" != status ]]; then
        [[ $EUID -eq 0 ]] || die "'$cmd' needs root"
        mkdir -p "$STATE"
        # one up/down at a time on this machine
        exec 9>"$STATE/lock"
        flock -w 600 9 || die "another cluster.sh holds $STATE/lock"
    fi
    "$cmd"
}

main "$@"
