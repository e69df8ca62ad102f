#!/usr/bin/env bash
# Batch prediction as a SLURM job (one GPU if the node has one, else CPU):
#   sbatch slurm/predict.sh FOLDER [OUTPUT.csv] [predict options…]
#SBATCH --job-name=lenet-predict
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --output=logs/%x-%j.out
#SBATCH --time=00:30:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/lenet-dist ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
exec bash jobs/predict_folder.sh "$@"
