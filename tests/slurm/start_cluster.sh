#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for the biomol-dl test suite.
#
# For CI and developers running tests/test_slurm.py as root (a container or a throwaway VM): starts
# munged (creating a key if missing), writes /etc/slurm/slurm.conf and gres.conf from the templates
# beside this script (this host, its CPUs and memory, one fake GPU), starts slurmctld and slurmd as
# root daemons and waits until `sinfo` shows the node idle. Idempotent: a cluster already running
# with the same configuration is left alone; a changed configuration restarts the daemons.
#
# usage: start_cluster.sh [--install]
#   --install   install slurm-wlm and munge with apt-get first if missing (install_slurm.sh)
# env:
#   BIOMOL_DL_SLURM_TIMEOUT   seconds to wait for the node to become idle (default 60)
#
# Exit status: 0 ready (the last line says "started" or "already running"), 3 SLURM/munge not
# installed, 4 not root, 5 /etc/slurm holds a configuration this script did not write, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MARKER="# biomol-dl test cluster"
CLUSTER=biomoldl
CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm
LOGDIR=/var/log/slurm
RUNDIR=/run/slurm
STATE_DIR=/run/biomol-dl-slurm
TIMEOUT=${BIOMOL_DL_SLURM_TIMEOUT:-60}
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "start_cluster.sh: $*"; }
die() {
    local code=$1
    shift
    echo "start_cluster.sh: $*" >&2
    exit "$code"
}

install=0
for arg in "$@"; do
    case $arg in
        --install) install=1 ;;
        -h | --help)
            sed -n '2,16p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *) die 1 "unknown argument: $arg" ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die 4 "must run as root (slurmctld/slurmd/munged are started as root daemons)"

if [[ $install -eq 1 ]]; then
    "$HERE/install_slurm.sh" || die 3 "installing slurm-wlm and munge failed"
fi
for bin in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch squeue; do
    command -v "$bin" >/dev/null 2>&1 ||
        die 3 "$bin not found: install Debian's slurm-wlm and munge (tests/slurm/install_slurm.sh)"
done

# pid_alive PIDFILE NAME: the pid in PIDFILE is a live (not zombie) process called NAME.
pid_alive() {
    local pidfile=$1 name=$2 pid stat
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$name" ]] || return 1
    stat=$(<"/proc/$pid/stat") || return 1
    [[ ${stat##*) } != Z* ]]
}

mkdir -p "$STATE_DIR"
# Two test sessions starting the cluster at once would race on the config and the daemons.
exec 9>"$STATE_DIR/lock"
flock -w 120 9 || die 1 "another start_cluster.sh/stop_cluster.sh holds $STATE_DIR/lock"
export BIOMOL_DL_SLURM_LOCKED=1 # stop_cluster.sh, called below, must not wait for our lock

# ---------------------------------------------------------------- munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

if ! munge_ok; then
    munge_user=munge
    id "$munge_user" >/dev/null 2>&1 || munge_user=root
    install -d -m 0700 -o "$munge_user" /etc/munge /var/lib/munge /var/log/munge
    install -d -m 0755 -o "$munge_user" /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown "$munge_user:" /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    say "starting munged as $munge_user"
    if [[ $munge_user == root ]]; then
        munged --force 9>&-
    else
        runuser -u "$munge_user" -- munged 9>&-
    fi
    # Remember that we started it, so stop_cluster.sh stops only what we started.
    touch "$STATE_DIR/munged.started"
    for _ in $(seq 1 50); do
        munge_ok && break
        sleep 0.2
    done
    munge_ok || die 1 "munged does not answer (munge -n | unmunge fails); see /var/log/munge"
fi

# ---------------------------------------------------------------- configuration
host=$(hostname -s)
cpus=$(nproc)
# slurmd drains a node whose configured memory exceeds what it detects: take what slurmd itself
# detects and keep 10 % back.
mem_mb=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
if [[ -z $mem_mb ]]; then
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
fi
mem_mb=$((mem_mb * 9 / 10))

render() {
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" \
        -e "s|@MEM_MB@|$mem_mb|g" -e "s|@SPOOL@|$SPOOL|g" -e "s|@LOGDIR@|$LOGDIR|g" \
        -e "s|@RUNDIR@|$RUNDIR|g" "$1"
}

mkdir -p "$CONF_DIR"
changed=0
for name in slurm.conf gres.conf; do
    target=$CONF_DIR/$name
    new=$(render "$HERE/$name.in")
    if [[ -e $target ]]; then
        head -n1 "$target" | grep -qF "$MARKER" ||
            die 5 "$target exists and was not written by this script; not touching a real cluster"
        [[ $(<"$target") == "$new" ]] && continue
    fi
    printf '%s\n' "$new" >"$target"
    chmod 0644 "$target"
    changed=1
done
mkdir -p "$SPOOL/ctld" "$SPOOL/d" "$LOGDIR" "$RUNDIR"

# ---------------------------------------------------------------- daemons
ctld_pid=$RUNDIR/slurmctld.pid
d_pid=$RUNDIR/slurmd.pid

if [[ $changed -eq 1 ]] && { pid_alive "$ctld_pid" slurmctld || pid_alive "$d_pid" slurmd; }; then
    say "configuration changed; restarting slurmctld and slurmd"
    "$HERE/stop_cluster.sh" --keep-munge
fi

started=0
if ! pid_alive "$ctld_pid" slurmctld; then
    say "starting slurmctld"
    slurmctld 9>&- # the daemons must not inherit (and hold) our lock
    started=1
fi
if ! pid_alive "$d_pid" slurmd; then
    say "starting slurmd"
    slurmd 9>&-
    started=1
fi

# ---------------------------------------------------------------- wait for the node
deadline=$((SECONDS + TIMEOUT))
resumed=0
state=""
while ((SECONDS < deadline)); do
    state=$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null | head -n1 || true)
    case $state in
        idle | mixed | allocated | completing)
            # slurmctld remembers the node as idle for a while after its slurmd died: also ask
            # the local slurmd itself.
            scontrol show slurmd >/dev/null 2>&1 && break
            ;;
        down* | drain* | drained*)
            # A node left down/drained by an earlier run (e.g. killed slurmd) is put back once.
            if [[ $resumed -eq 0 ]]; then
                scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
    esac
    state=""
    sleep 0.5
done
if [[ -z $state ]]; then
    echo "start_cluster.sh: node $host not idle after ${TIMEOUT}s:" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
    exit 1
fi

if [[ $started -eq 1 ]]; then
    touch "$STATE_DIR/slurm.started"
    say "cluster $CLUSTER ready on $host ($cpus CPUs, ${mem_mb} MB, gpu:1): started"
else
    say "cluster $CLUSTER ready on $host ($cpus CPUs, ${mem_mb} MB, gpu:1): already running"
fi
