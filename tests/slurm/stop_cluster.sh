#!/usr/bin/env bash
# Stop the one-node SLURM test cluster started by start_cluster.sh.
#
# For CI and developers: shuts down slurmctld and slurmd (scontrol shutdown, then SIGTERM by
# pidfile if they linger) and munged if start_cluster.sh started it. Running jobs are killed.
# Refuses to touch a cluster whose slurm.conf this script's twin did not write.
#
# usage: stop_cluster.sh [--keep-munge]
set -euo pipefail

MARKER="# biomol-dl test cluster"
CONF=/etc/slurm/slurm.conf
RUNDIR=/run/slurm
STATE_DIR=/run/biomol-dl-slurm
export PATH="$PATH:/usr/sbin:/sbin"

keep_munge=0
for arg in "$@"; do
    case $arg in
        --keep-munge) keep_munge=1 ;;
        *)
            echo "stop_cluster.sh: unknown argument: $arg" >&2
            exit 1
            ;;
    esac
done

[[ $(id -u) -eq 0 ]] || {
    echo "stop_cluster.sh: must run as root" >&2
    exit 4
}
if [[ -e $CONF ]] && ! head -n1 "$CONF" | grep -qF "$MARKER"; then
    echo "stop_cluster.sh: $CONF was not written by start_cluster.sh; not stopping" >&2
    exit 5
fi

if [[ ${BIOMOL_DL_SLURM_LOCKED:-0} != 1 ]]; then
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock -w 120 9 || {
        echo "stop_cluster.sh: another start/stop holds $STATE_DIR/lock" >&2
        exit 1
    }
fi

# pid_of PIDFILE NAME: print the pid in PIDFILE if it is a live process called NAME.
pid_of() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$name" ]] || return 1
    echo "$pid"
}

# wait_gone PID NAME SECONDS: wait for PID to exit, then SIGTERM, then SIGKILL.
wait_gone() {
    local pid=$1 name=$2 secs=$3 i
    for ((i = 0; i < secs * 5; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.2
    done
    echo "stop_cluster.sh: $name ($pid) still running; SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.2
    done
    echo "stop_cluster.sh: $name ($pid) still running; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

ctld=$(pid_of "$RUNDIR/slurmctld.pid" slurmctld || true)
slurmd_pid=$(pid_of "$RUNDIR/slurmd.pid" slurmd || true)
if [[ -n $ctld ]]; then
    # Shuts down slurmctld and every slurmd it knows.
    scontrol shutdown >/dev/null 2>&1 || kill -TERM "$ctld" 2>/dev/null || true
    wait_gone "$ctld" slurmctld 20
fi
if [[ -n $slurmd_pid ]]; then
    [[ -d /proc/$slurmd_pid ]] && kill -TERM "$slurmd_pid" 2>/dev/null || true
    wait_gone "$slurmd_pid" slurmd 10
fi
rm -f "$STATE_DIR/slurm.started"
echo "stop_cluster.sh: slurmctld and slurmd stopped"

if [[ $keep_munge -eq 0 && -e $STATE_DIR/munged.started ]]; then
    munged_pid=$(pid_of /run/munge/munged.pid munged || true)
    if [[ -n $munged_pid ]]; then
        kill -TERM "$munged_pid" 2>/dev/null || true
        wait_gone "$munged_pid" munged 10
    fi
    rm -f "$STATE_DIR/munged.started"
    echo "stop_cluster.sh: munged stopped"
fi
