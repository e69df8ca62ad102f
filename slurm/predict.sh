#!/usr/bin/env bash
# Batch prediction as a SLURM job, on CPUs unless a GPU is asked for (SLURM exposes none otherwise):
#   sbatch slurm/predict.sh FOLDER [OUTPUT.csv] [predict options…]            # CPUs
#   sbatch --gpus=1 slurm/predict.sh FOLDER [OUTPUT.csv] [predict options…]   # one GPU (--device auto uses it)
#SBATCH --job-name=lenet-predict
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --output=logs/%x-%j.out
#SBATCH --time=00:30:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/lenet-dist ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
exec bash jobs/predict_folder.sh "$@"
