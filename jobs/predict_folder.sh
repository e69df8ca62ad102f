#!/usr/bin/env bash
# Batch prediction over a folder of images (recursively), to a CSV next to nothing else:
#   bash jobs/predict_folder.sh FOLDER [OUTPUT.csv] [extra `lenet-dist predict` options…]
# Default checkpoint: the best model of the most recent run under runs/ (--checkpoint to choose).
# Rows with an error field are inputs that could not be read; the exit code is 5 when any exist.
set -euo pipefail
FOLDER=${1:?usage: jobs/predict_folder.sh FOLDER [OUTPUT.csv] [predict options…]}
OUT=${2:-predictions/$(basename "$FOLDER").csv}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$(dirname "$OUT")"
TMP="$OUT.tmp.$$"
trap 'rm -f "$TMP"' EXIT
set +e
lenet-dist predict "$FOLDER" --recursive --csv "$@" >"$TMP"
RC=$?
set -e
if [ "$RC" -eq 0 ] || [ "$RC" -eq 5 ]; then   # 5: some inputs failed; their rows say why
  mv "$TMP" "$OUT"
  echo "lenet-dist: predictions for $(($(wc -l <"$OUT") - 1)) inputs in $OUT" >&2
fi
exit "$RC"
