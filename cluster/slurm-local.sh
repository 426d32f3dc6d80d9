#!/usr/bin/env bash
# A private single-node Slurm, started as root without systemd:
#
#   cluster/slurm-local.sh start STATE_DIR    # then: export SLURM_CONF=STATE_DIR/slurm.conf
#   cluster/slurm-local.sh stop STATE_DIR
#   cluster/slurm-local.sh --help
#
# start: a munge key and munged with its own socket, pid, seed and log under STATE_DIR/munge;
# STATE_DIR/slurm.conf from cluster/slurm-single-node.conf.in (this host's short name, its CPU
# count, two free TCP ports); slurmctld and slurmd with `-f` that file; then it waits until
# `sinfo` shows the node idle. Nothing outside STATE_DIR is written, so several instances
# (other STATE_DIRs) can run side by side, beside a system Slurm if there is one.
# stop: cancels the instance's jobs, stops the three daemons, and keeps STATE_DIR (logs).
#
# Environment: LQ_SLURM_CTLD_PORT, LQ_SLURMD_PORT (ports; default: free ones found now),
# LQ_SLURM_CPUS (default: nproc), LQ_SLURM_CRED_EXPIRE (seconds; default 10, which is also how
# long a requeued job waits before it starts again), LQ_SLURM_START_TIMEOUT (seconds to wait for
# an idle node; default 60).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "slurm-local.sh: $*" >&2; exit 1; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    start|stop) ;;
    *) usage >&2; exit 2 ;;
esac
[ $# -eq 2 ] || { usage >&2; exit 2; }
action="$1"
here="$(cd "$(dirname "$0")" && pwd)"

# a free TCP port on localhost: bind port 0 and let the kernel choose (released at once, so
# another process could take it before the daemon does; the start check would then fail loudly)
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# kill PID from FILE and wait for it to go (TERM, then KILL after a grace period)
stop_pidfile() {
    local file="$1" name="$2" pid i
    [ -s "$file" ] || return 0
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-local.sh: $name (pid $pid) ignored TERM for 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

if [ "$action" = stop ]; then
    state="$2"
    [ -d "$state" ] || die "stop: no state directory $state"
    state="$(cd "$state" && pwd)"
    if [ -f "$state/slurm.conf" ] && [ -s "$state/run/slurmctld.pid" ]; then
        # jobs first, so that their steps (children of slurmstepd, not of slurmd) end too
        SLURM_CONF="$state/slurm.conf" scancel --quiet --user="$(id -un)" 2>/dev/null || true
        for i in $(seq 1 20); do
            [ -z "$(SLURM_CONF="$state/slurm.conf" squeue -h -t running,completing 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    for f in "$state"/run/slurmd.*.pid; do [ -e "$f" ] && stop_pidfile "$f" slurmd; done
    stop_pidfile "$state/run/slurmctld.pid" slurmctld
    stop_pidfile "$state/munge/munged.pid" munged
    exit 0
fi

# ---- start ------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "start: must run as root (slurmd launches jobs as their users)"
for tool in munged mungekey slurmctld slurmd sinfo python3; do
    command -v "$tool" >/dev/null || die "start: $tool not found (tools/setup.sh installs slurm-wlm and munge)"
done
state="$2"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
[ -s "$state/run/slurmctld.pid" ] && kill -0 "$(cat "$state/run/slurmctld.pid")" 2>/dev/null &&
    die "start: a slurmctld already runs from $state (stop it first)"
# Slurm stores the path in fixed-size fields and munge in a sockaddr_un (108 bytes)
[ "${#state}" -le 80 ] || die "start: state directory path too long (${#state} > 80 characters): $state"

node="$(hostname -s 2>/dev/null || uname -n)"
node="${node%%.*}"
cpus="${LQ_SLURM_CPUS:-$(nproc)}"
ctld_port="${LQ_SLURM_CTLD_PORT:-$(free_port)}"
slurmd_port="${LQ_SLURMD_PORT:-$(free_port)}"
[ "$ctld_port" != "$slurmd_port" ] || slurmd_port="$(free_port)"

# munged refuses a socket directory that others cannot traverse, and a key others can read
mkdir -p "$state/munge/key" "$state/ctld" "$state/spool/slurmd.$node" "$state/run" "$state/log"
chmod 755 "$state" "$state/munge"
chmod 700 "$state/munge/key"
[ -s "$state/munge/key/munge.key" ] || mungekey --create --keyfile="$state/munge/key/munge.key"
munged --socket="$state/munge/munge.socket" --key-file="$state/munge/key/munge.key" \
    --pid-file="$state/munge/munged.pid" --seed-file="$state/munge/munged.seed" \
    --log-file="$state/munge/munged.log" ||
    die "start: munged failed: $(tail -3 "$state/munge/munged.log" 2>/dev/null)"
# from here a failed start stops what it started, so no daemon outlives the error
started_fail() { echo "slurm-local.sh: start: $*" >&2; "$0" stop "$state" || true; exit 1; }

sed -e "s|@CLUSTER@|lq$(printf '%s' "$state" | cksum | cut -c1-6)|" \
    -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" -e "s|@STATE@|$state|g" \
    -e "s|@CTLD_PORT@|$ctld_port|" -e "s|@SLURMD_PORT@|$slurmd_port|" \
    -e "s|@CRED_EXPIRE@|${LQ_SLURM_CRED_EXPIRE:-10}|" -e "s|@PARTITION@|debug|" \
    "$here/slurm-single-node.conf.in" > "$state/slurm.conf.tmp"
mv "$state/slurm.conf.tmp" "$state/slurm.conf"
export SLURM_CONF="$state/slurm.conf"

# -c: no jobs recovered from an earlier start of this STATE_DIR (they died with its daemons)
slurmctld -c -f "$SLURM_CONF" || started_fail "slurmctld failed: $(tail -5 "$state/log/slurmctld.log" 2>/dev/null)"
slurmd -c -f "$SLURM_CONF" -N "$node" || started_fail "slurmd failed: $(tail -5 "$state/log/slurmd.$node.log" 2>/dev/null)"

timeout="${LQ_SLURM_START_TIMEOUT:-60}"
deadline=$((SECONDS + timeout))
node_state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    node_state="$(sinfo -h -n "$node" -o %T 2>/dev/null || true)"
    [ "$node_state" = idle ] && break
    sleep 0.5
done
if [ "$node_state" != idle ]; then
    echo "slurm-local.sh: node $node not idle after $timeout s (state: '${node_state:-no answer}')" >&2
    echo "--- slurmctld.log" >&2; tail -20 "$state/log/slurmctld.log" >&2 2>/dev/null || true
    echo "--- slurmd.$node.log" >&2; tail -20 "$state/log/slurmd.$node.log" >&2 2>/dev/null || true
    "$0" stop "$state" || true
    exit 1
fi
# a node with fewer CPUs than asked for would leave two-rank jobs pending for ever
node_cpus="$(scontrol show node "$node" 2>/dev/null | grep -o 'CPUTot=[0-9]*' | cut -d= -f2)"
[ "$node_cpus" = "$cpus" ] ||
    started_fail "node $node has ${node_cpus:-no} CPUs, want $cpus: $(grep -i cpus "$state/log/slurmd.$node.log" | tail -3)"
echo "export SLURM_CONF=$SLURM_CONF" > "$state/env.sh"
echo "slurm-local.sh: node $node idle ($cpus CPUs), controller on port $ctld_port; export SLURM_CONF=$SLURM_CONF"
