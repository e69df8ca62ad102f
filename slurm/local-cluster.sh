#!/usr/bin/env bash
# A real SLURM cluster on this one machine, for tests and CI (Debian's slurm-wlm 22.05 + munge).
#
#   bash slurm/local-cluster.sh start     install if needed, write slurm.conf, start munged,
#                                         slurmctld and two slurmd (nodes n1, n2), wait until idle
#   bash slurm/local-cluster.sh stop      stop the daemons by PID
#   bash slurm/local-cluster.sh env       print `export SLURM_CONF=…` for this cluster
#
# State, logs and PIDs live in $LENET_SLURM_DIR (default /tmp/lenet-slurm). Needs root (apt,
# /etc/hosts, munge). Notes on what works here: the project's shared slurm-local.md.
set -euo pipefail

DIR=${LENET_SLURM_DIR:-/tmp/lenet-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

install_packages() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "local-cluster: installing slurmctld slurmd slurm-client munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
}

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  # node names must resolve: a job uses the first node's name as the rendezvous address
  grep -qE '^127\.0\.0\.1[[:space:]].*\bn1\b' /etc/hosts || echo "127.0.0.1 n1 n2" >>/etc/hosts
  cat >"$CONF" <<EOF
ClusterName=lenet
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldPort=16817
NodeName=n[1-2] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[17001-17002] CPUs=2 RealMemory=4000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [ -f /etc/munge/munge.key ] || mungekey --create
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$DIR/log/munged.log" 2>&1 &
  echo $! >"$DIR/munged.pid"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "local-cluster: munged did not start" >&2; exit 1
}

start() {
  install_packages
  stop_daemons quiet
  write_conf
  start_munge
  export SLURM_CONF=$CONF
  slurmctld -D -i -f "$CONF" >"$DIR/log/slurmctld.out" 2>&1 &
  echo $! >"$DIR/ctld.pid"
  for n in n1 n2; do
    slurmd -D -N "$n" -f "$CONF" >"$DIR/log/slurmd-$n.out" 2>&1 &
    echo $! >"$DIR/slurmd-$n.daemon.pid"
  done
  for _ in $(seq 150); do
    if [ "$(sinfo -h -o '%T' 2>/dev/null | sort -u | tr -d '\n')" = "idle" ]; then
      echo "local-cluster: 2 nodes idle; export SLURM_CONF=$CONF" >&2
      return
    fi
    sleep 0.2
  done
  echo "local-cluster: nodes not idle after 30 s; see $DIR/log" >&2
  sinfo >&2 || true
  exit 1
}

stop_daemons() {
  for f in "$DIR"/slurmd-n1.daemon.pid "$DIR"/slurmd-n2.daemon.pid "$DIR"/ctld.pid "$DIR"/munged.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  [ "${1:-}" = quiet ] || echo "local-cluster: stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
