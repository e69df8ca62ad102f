#!/usr/bin/env bash
# Train lenet-dist on a SLURM cluster: one node or many, GPU or CPU nodes.
#
#   sbatch slurm/train.sh                                   # defaults
#   sbatch --nodes=2 --gpus-per-node=8 --cpus-per-task=32 slurm/train.sh -c configs/x.yaml --set optim.lr=0.01
#   sbatch slurm/train.sh --run-name my-run                 # resubmit the same line to continue my-run
#
# CPUs: one task per node runs all of that node's processes, so ask for the CPUs they need together
# (--cpus-per-task, default 2 below; e.g. 4 per GPU): each process uses its share for torch's
# threads, and the run's first log line says how many it got.
# Arguments pass through to `lenet-dist train`. Everything else comes from SLURM's environment:
# nodes, processes per node (the node's GPUs, else LENET_CPU_PROCS_PER_NODE, default 1), the head
# node's address, a port derived from the job id, and each node's rank (read on that node).
# The run: your --run-name (or run_name in your config) if you give one, else LENET_RUN_NAME, else
# <job name>-<job id>; the job resumes that run's latest checkpoint when it has one.
# Stopping: on SIGUSR1 (120 s before the time limit, or `scancel --signal=USR1 --full JOB`) the
# workers checkpoint and the job requeues itself (at most LENET_MAX_REQUEUES times). On SIGTERM
# (`scancel JOB`, or a preemption, after which SLURM itself requeues the job) the workers
# checkpoint and the job ends. Submit from the repository root: the log goes to
# logs/<job name>-<job id>.out, appended to across requeues.
#
#SBATCH --job-name=lenet-dist
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --time=02:00:00
set -euo pipefail

EXIT_RESUMABLE=75
MAX_REQUEUES=${LENET_MAX_REQUEUES:-3}
MAX_RESTARTS=${LENET_MAX_RESTARTS:-3}
RESTARTS=${SLURM_RESTART_COUNT:-0}
cd "${SLURM_SUBMIT_DIR:-.}"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/lenet-dist ]; then export PATH="$PWD/.venv/bin:$PATH"; fi

# the job's name for the run, used only when the arguments name none: a requeued job (same job
# id) finds and resumes its own run
if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
  JOB_RUN_NAME=${LENET_RUN_NAME:-${SLURM_JOB_NAME}-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}}
else
  JOB_RUN_NAME=${LENET_RUN_NAME:-${SLURM_JOB_NAME}-${SLURM_JOB_ID}}
fi
# defaults first, the user's arguments after them (the last value of an option wins); a requeued
# attempt always continues where the run is, even if the first one started from --resume PATH
TRAIN_ARGS=(--default-run-name "$JOB_RUN_NAME" --resume auto "$@")
[ "$RESTARTS" -gt 0 ] && TRAIN_ARGS+=(--resume auto)

echo "lenet-dist: job ${SLURM_JOB_ID} start $(date -Is) on ${SLURM_JOB_NODELIST}, restart ${RESTARTS}"
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=$((20000 + SLURM_JOB_ID % 20000))
GPUS=${SLURM_GPUS_ON_NODE:-0}
if [ "$GPUS" -gt 0 ] 2>/dev/null; then PER_NODE=$GPUS; else PER_NODE=${LENET_CPU_PROCS_PER_NODE:-1}; fi
WORLD=$((SLURM_NNODES * PER_NODE))
# user errors (bad config, unknown key, a batch these processes cannot share, data that cannot be
# had) end the job here with one line, before srun, and are never requeued; the data is fetched
# here, once, so the ranks on every node only verify it
RUN_DIR=$(lenet-dist train "${TRAIN_ARGS[@]}" --dry-run --fetch-data --world-size "$WORLD")
export LENET_DIST_DATA_FETCHED=1
MULTI=""
[ "$WORLD" -gt 1 ] && MULTI="--multi_gpu"   # the N-process launcher; on CPU nodes it runs gloo DDP
export LENET_HEAD=$HEAD LENET_PORT=$PORT LENET_PER_NODE=$PER_NODE LENET_WORLD=$WORLD LENET_MULTI=$MULTI
export LENET_RUN_DIR=$RUN_DIR OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
CPUS=${SLURM_CPUS_PER_TASK:-1}
echo "lenet-dist: ${SLURM_NNODES} node(s) x ${PER_NODE} process(es), ${CPUS} CPU(s) per node, head ${HEAD}:${PORT}," \
     "run ${RUN_DIR}"
if [ "$CPUS" -lt "$PER_NODE" ]; then
  echo "lenet-dist: warning: ${PER_NODE} processes per node share ${CPUS} CPU(s); ask for more with --cpus-per-task"
fi

REQUEUE=0
# shellcheck disable=SC2317  # invoked by the traps below
stop_workers() {
  echo "lenet-dist: $1 received $(date -Is): asking the workers to checkpoint and stop; $2"
  mkdir -p "$RUN_DIR" && touch "$RUN_DIR/STOP"   # reaches every rank; launchers do not forward USR1
}
# one launcher per node; SLURM_NODEID is read on each node, not expanded once here. A rank that
# dies takes its node's launcher down, and --kill-on-bad-exit the other nodes' within seconds.
run_step() {
  # shellcheck disable=SC2016  # single quotes on purpose: expanded by the task on its node
  # --cpus-per-task again: srun does not take it from the allocation since SLURM 22.05
  srun --kill-on-bad-exit=1 --cpus-per-task="$CPUS" bash -c '
    # USR1 sent to the tasks alone (scancel --signal=USR1): stop, and tell the batch shell to requeue.
    # Not TERM: srun sends that to every task when one fails, and that is a crash to restart, not a stop.
    trap "touch \"$LENET_RUN_DIR/.requeue\" \"$LENET_RUN_DIR/STOP\"" USR1
    if [ "$LENET_WORLD" -eq 1 ]; then
      python -m lenet_dist train "$@" &   # no launcher needed: its exit code (75: resumable) passes through
    else
      # the launcher ignores USR1 (scancel --full signals every process of the step; its default
      # action would end the launcher mid-checkpoint); the workers set their own handler and stop
      (trap "" USR1; exec accelerate launch $LENET_MULTI --num_machines "$SLURM_NNODES" \
        --machine_rank "$SLURM_NODEID" --num_processes "$LENET_WORLD" --main_process_ip "$LENET_HEAD" \
        --main_process_port "$LENET_PORT" --mixed_precision no --dynamo_backend no \
        -m lenet_dist train "$@") &
    fi
    child=$!
    while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || break; done
    # the launcher reports any worker exit but 0 as 1: a clean stop is what the run says it was
    if [ "$rc" -ne 0 ] && [ "$(python -m lenet_dist runs status "$LENET_RUN_DIR" 2>/dev/null)" = stopped ]; then
      rc=75
    fi
    exit $rc
  ' node-launch "${TRAIN_ARGS[@]}" &
  STEP=$!
  set +e
  while :; do
    wait "$STEP"; RC=$?
    kill -0 "$STEP" 2>/dev/null || break   # still running: the wait was cut short by a signal
  done
  set -e
}

# a crashed or hung attempt (any exit but success, a clean stop or a user error) is restarted within
# the job from the latest checkpoint, at most LENET_MAX_RESTARTS times; the run itself refuses a
# restart that would only repeat a crash at the same step (exit 70)
RESTART=0
STOPPING=0
trap 'REQUEUE=1; STOPPING=1; stop_workers SIGUSR1 "the job requeues itself"' USR1
trap 'STOPPING=1; stop_workers SIGTERM "the job ends (scancel, time limit or preemption)"' TERM
while :; do
  export LENET_PORT=$((PORT + RESTART))   # a fresh rendezvous port for each attempt
  run_step
  STATUS=$(python -m lenet_dist runs status "$RUN_DIR" 2>/dev/null || true)
  # a clean stop on one node ends its task 75 and srun terminates the other nodes' tasks (143)
  # once every rank has saved: the step as a whole stopped cleanly
  [ "$STATUS" = "stopped" ] && RC=$EXIT_RESUMABLE
  if [ -e "$RUN_DIR/.requeue" ]; then REQUEUE=1; STOPPING=1; rm -f "$RUN_DIR/.requeue"; fi
  case "$RC" in 0|2|3|4|6|70|74) break ;; esac
  # under accelerate launch every failure is exit 1: the run's summary says which were deterministic
  case "$STATUS" in diverged) RC=6; break ;; failed\ *) RC=${STATUS#failed }; break ;; esac
  # a stop nobody asked the job for (srun's TERM to the survivors of a failed task) is a crash too
  [ "$STATUS" = "completed" ] || [ "$STOPPING" -eq 1 ] && break
  if [ "$RESTART" -ge "$MAX_RESTARTS" ]; then
    echo "lenet-dist: the job step failed (exit $RC); ${MAX_RESTARTS} restarts already, giving up"
    break
  fi
  RESTART=$((RESTART + 1))
  echo "lenet-dist: the job step failed (exit $RC) $(date -Is); restarting it from the run's latest checkpoint" \
       "(restart ${RESTART} of at most ${MAX_RESTARTS})"
  TRAIN_ARGS+=(--resume auto)
done

echo "lenet-dist: job step ended with exit code $RC, run status '${STATUS:-none}' $(date -Is)"
if [ "$STATUS" = "stopped" ]; then
  if [ "$REQUEUE" -eq 0 ]; then
    echo "lenet-dist: not requeueing it myself (stopped by SIGTERM); if SLURM requeues the job (a preemption," \
         "a lost node) it resumes by itself, else continue later with: sbatch slurm/train.sh" \
         "--run-name $(basename "$RUN_DIR") <same arguments>"
    exit $EXIT_RESUMABLE
  fi
  if [ "$RESTARTS" -lt "$MAX_REQUEUES" ]; then
    echo "lenet-dist: requeueing job ${SLURM_JOB_ID} (restart $((RESTARTS + 1)) of at most ${MAX_REQUEUES})"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  echo "lenet-dist: not requeueing: ${MAX_REQUEUES} requeues already; resume with the same --run-name"
  exit $EXIT_RESUMABLE
fi
[ "$STATUS" = "completed" ] && exit 0
exit "$RC"
