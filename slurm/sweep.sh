#!/usr/bin/env bash
# A job-array sweep: one array task per non-comment line of a sweep file, each line the extra
# `lenet-dist train` arguments of its task; every task is its own run (runs/<sweep>-<array id>-<task>)
# in W&B group <sweep>; a final job prints `lenet-dist runs compare` over all of them.
#
#   sbatch slurm/sweep.sh jobs/sweeps/lr.txt [common train arguments…]
#
# Submitted plainly, this job fans out: it submits the array (each task runs slurm/train.sh, so
# preemption and requeue work per task) and a compare job after it, and waits for both.
#SBATCH --job-name=lenet-sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --time=02:00:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/lenet-dist ]; then export PATH="$PWD/.venv/bin:$PATH"; fi

SWEEP_FILE=${1:?usage: sbatch slurm/sweep.sh SWEEP_FILE [train arguments…]}
shift
[ -f "$SWEEP_FILE" ] || { echo "lenet-dist: error: sweep file not found: $SWEEP_FILE" >&2; exit 2; }
NAME=$(basename "${SWEEP_FILE%.*}")
mapfile -t LINES < <(grep -vE '^[[:space:]]*(#|$)' "$SWEEP_FILE")
[ "${#LINES[@]}" -gt 0 ] || { echo "lenet-dist: error: $SWEEP_FILE has no task lines" >&2; exit 2; }

if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  read -ra TASK_ARGS <<<"${LINES[$SLURM_ARRAY_TASK_ID]}"
  echo "lenet-dist: sweep $NAME task $SLURM_ARRAY_TASK_ID: ${TASK_ARGS[*]}"
  exec bash slurm/train.sh "$@" "${TASK_ARGS[@]}" --set "tracking.group=$NAME"
fi

# fan out: the same checks as a task would make, so a bad line fails here, before anything runs
for i in "${!LINES[@]}"; do
  read -ra TASK_ARGS <<<"${LINES[$i]}"
  lenet-dist train "$@" "${TASK_ARGS[@]}" --run-name "check-$i" --dry-run >/dev/null
done
ARRAY_ID=$(sbatch --parsable --array="0-$((${#LINES[@]} - 1))" --job-name="$NAME" \
  --output="logs/%x-%A_%a.out" slurm/sweep.sh "$SWEEP_FILE" "$@")
echo "lenet-dist: sweep $NAME: array job $ARRAY_ID with ${#LINES[@]} tasks"
OUTPUT_DIR=$(lenet-dist train "$@" --run-name x --dry-run | xargs dirname)
COMPARE_ID=$(sbatch --parsable --wait --dependency="afterany:$ARRAY_ID" --job-name="$NAME-compare" \
  --nodes=1 --ntasks=1 --output="logs/%x-%j.out" \
  --wrap "lenet-dist runs compare $OUTPUT_DIR/$NAME-$ARRAY_ID-*" || true)
cat "logs/$NAME-compare-$COMPARE_ID.out" 2>/dev/null || true
COMPLETED=$(lenet-dist runs compare --json "$OUTPUT_DIR/$NAME-$ARRAY_ID-"* | grep -c '"status": "completed"' || true)
echo "lenet-dist: sweep $NAME: $COMPLETED of ${#LINES[@]} runs completed"
[ "$COMPLETED" -eq "${#LINES[@]}" ]
