#!/usr/bin/env bash
# Start a one-node Slurm cluster (slurmctld + slurmd + munge) on this machine for the e2e
# tests in tests/e2e/test_slurm.py. Debian 12, as root, no systemd. Idempotent: daemons
# already running are left alone. Exits 0 with a warning when Slurm cannot start, so that
# the Slurm tests skip (with the reason) instead of failing CI on machines without it.
set -uo pipefail
cd "$(dirname "$0")"

warn() { echo "setup-slurm: WARNING: $*" >&2; exit 0; }

[ "$(id -u)" = "0" ] || warn "not root; Slurm is not started (the Slurm tests will be skipped)"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || warn "no apt-get to install slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || echo "setup-slurm: apt-get update failed, trying the install anyway" >&2
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || warn "apt-get install slurm-wlm munge failed"
fi

# munge: one key, its daemon
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then mungekey --create --force >/dev/null 2>&1
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged || warn "munged did not start"
fi

# slurm.conf: this repo's, with the node's real CPU count and memory
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
sed -e "s/^NodeName=localhost .*/NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN/" \
  slurm.conf > /etc/slurm/slurm.conf

if ! pgrep -x slurmctld >/dev/null 2>&1; then
  /usr/sbin/slurmctld || warn "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
fi
if ! pgrep -x slurmd >/dev/null 2>&1; then
  /usr/sbin/slurmd -N localhost || warn "slurmd did not start (see /var/log/slurm/slurmd.log)"
fi

# wait until the node takes jobs
for _ in $(seq 1 30); do
  state=$(sinfo -h -N -o "%T" 2>/dev/null | head -1)
  case "$state" in
    idle*|mixed*|allocated*) echo "setup-slurm: Slurm is up (node localhost: $state, $cpus CPUs)"; exit 0 ;;
    down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 ;;
  esac
  sleep 1
done
warn "the Slurm node did not become idle (state: ${state:-unknown}); see /var/log/slurm/"
