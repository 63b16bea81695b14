#!/usr/bin/env bash
# Best-effort single-node SLURM cluster on this machine, for tests/cli/test_slurm.py.
#
# Installs slurm-wlm and munge (Debian) when missing, starts munged, writes a minimal
# slurm.conf for this host (no accounting, no cgroups, no systemd) and starts slurmctld and
# slurmd directly, then waits for the node to be idle. Idempotent: a cluster that is already
# up is left alone, daemons that already run are not started twice.
#
# It NEVER fails: whatever goes wrong, it prints one line saying why and exits 0 (the SLURM
# test then skips with its own reason). The last line printed always starts "slurm-up:".
set -u

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by synthsr-nipype .ci/slurm-up.sh"
LOG_DIR=/var/log/slurm
WAIT_S=${SLURM_UP_WAIT_S:-60}

# Whatever happens below (even an unexpected error), exit 0 with a last line saying why.
trap 'rc=$?; [ "$rc" = 0 ] || echo "slurm-up: cluster NOT up: unexpected exit status $rc"; exit 0' EXIT

up() { echo "slurm-up: cluster UP: $*"; exit 0; }
down() { echo "slurm-up: cluster NOT up: $*"; exit 0; }

node_state() {  # state of this host's node as sinfo prints it (idle, mix, down*, ...), or nothing
  timeout 10 sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1 | tr -d ' '
}

node_ready() {  # idle/mixed/allocated and responding
  case "$(node_state)" in idle | mix | alloc) return 0 ;; *) return 1 ;; esac
}

HOST=$(hostname -s 2>/dev/null || uname -n 2>/dev/null | cut -d. -f1)
[ -n "$HOST" ] || down "hostname -s printed nothing"

running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }  # alive, not a zombie

# Already up (a second run): nothing to do. slurmctld keeps showing a node idle for
# SlurmdTimeout after its slurmd died, so the local daemons must be alive as well.
if command -v sinfo >/dev/null 2>&1 && node_ready; then
  if running slurmctld && running slurmd && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    up "node $HOST is $(node_state) (already running)"
  fi
  [ "$(id -u)" = 0 ] || up "node $HOST is $(node_state) (a cluster that this user does not manage)"
fi

[ "$(id -u)" = 0 ] || down "needs root to install and start slurmctld/slurmd (running as $(id -un))"

# ------------------------------------------------------------------ packages
missing=
for exe in sbatch squeue sinfo scontrol slurmctld slurmd munged munge unmunge; do
  command -v "$exe" >/dev/null 2>&1 || missing="$missing $exe"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || down "missing$missing and no apt-get to install slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt/dpkg (up to 5 min) instead of failing on its lock.
  apt_install() { apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1; }
  apt_install || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null 2>&1 && apt_install; } \
    || down "apt-get install slurm-wlm munge failed (missing$missing)"
  for exe in sbatch squeue sinfo scontrol slurmctld slurmd munged; do
    command -v "$exe" >/dev/null 2>&1 || down "$exe still missing after installing slurm-wlm munge"
  done
fi

# ------------------------------------------------------------------ munge
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || MUNGE_USER=root
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1
  fi
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
  [ -s /etc/munge/munge.key ] || down "could not create /etc/munge/munge.key"
fi
chown "$MUNGE_USER": /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge 2>/dev/null
chmod 0700 /etc/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0400 /etc/munge/munge.key 2>/dev/null
chmod 0755 /run/munge 2>/dev/null
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # --force: start even if a dead munged left its socket or pid file behind.
  if [ "$MUNGE_USER" = root ]; then
    munged --force >/dev/null 2>&1
  else
    runuser -u "$MUNGE_USER" -- munged --force >/dev/null 2>&1 \
      || su -s /bin/sh "$MUNGE_USER" -c "munged --force" >/dev/null 2>&1
  fi
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
  done
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 \
    || down "munged does not answer (see /var/log/munge/munged.log)"
fi

# ------------------------------------------------------------------ slurm.conf
NCPU=$(nproc 2>/dev/null || echo 1)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo 2>/dev/null)
[ -n "$MEM_MB" ] && [ "$MEM_MB" -gt 0 ] 2>/dev/null || MEM_MB=2048
# Leave the OS a margin: 1 GiB or 10 %, whichever is larger (at least 512 MB for jobs).
MARGIN=$(( MEM_MB / 10 > 1024 ? MEM_MB / 10 : 1024 ))
REAL_MB=$(( MEM_MB - MARGIN > 512 ? MEM_MB - MARGIN : 512 ))
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd || down "cannot create slurm directories"
chmod 0755 /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR" 2>/dev/null

new_conf=$(cat <<EOF
$MARK
# Single node, localhost only; no accounting, no cgroups (no systemd here).
ClusterName=synthsr-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
# CPUs/RealMemory below are what jobs may use, not the detected hardware: do not drain on it.
SlurmdParameters=config_overrides
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$NCPU RealMemory=$REAL_MB State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=no
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    # Someone else's configuration: keep a copy, once.
    [ -e "$CONF.before-synthsr-ci" ] || cp -p "$CONF" "$CONF.before-synthsr-ci"
  fi
  printf '%s\n' "$new_conf" > "$CONF" || down "cannot write $CONF"
  chmod 0644 "$CONF"
  conf_changed=yes
fi

# ------------------------------------------------------------------ daemons
if running slurmctld; then
  [ "$conf_changed" = yes ] && timeout 20 scontrol reconfigure >/dev/null 2>&1
else
  timeout 60 slurmctld >>"$LOG_DIR/slurmctld.start.log" 2>&1 \
    || down "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
if ! running slurmd; then
  timeout 60 slurmd -N "$HOST" >>"$LOG_DIR/slurmd.start.log" 2>&1 \
    || down "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

# ------------------------------------------------------------------ wait for the node
resumed=no
deadline=$(( $(date +%s) + WAIT_S ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  node_ready && up "node $HOST is $(node_state) (CPUs=$NCPU RealMemory=${REAL_MB}M, partition ci)"
  case "$(node_state)" in
    down | drain | drng | fail | inval)  # left down by an earlier run: bring it back once
      if [ "$resumed" = no ]; then
        timeout 10 scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1
        resumed=yes
      fi ;;
  esac
  sleep 1
done
running slurmctld || down "slurmctld exited (see $LOG_DIR/slurmctld.log)"
running slurmd || down "slurmd exited (see $LOG_DIR/slurmd.log)"
down "node $HOST not idle after ${WAIT_S}s (sinfo: '$(node_state)'; see $LOG_DIR/)"
