#!/usr/bin/env bash
# The leave-one-material-out learning curves of docs/new_host.md in one GPU call (issue 14).
#
#   bash training/loo_run.sh [DATA_TARBALL] [OUT_DIR] [TOTAL_MINUTES]
#
# For each of MATERIALS (high-density names; default "WSe2 hBN GaSe"): trains a model on every set of the
# DefiNet data except that material (both densities), with the shipped model's recipe and PER_MODEL_MIN minutes
# each (the first material also with a second seed, for selection by spread), then runs
# bench/new_host_curve.py on it: zero-shot, fine-tuned and from-scratch ratios for N = NS, and for the first
# material N = 25 and 50 chosen by spread against three random draws. OUT_DIR receives the left-out models'
# logs, the curves' JSON and PNG and the console log; the checkpoints stay in the work directory (experiments).
# Wheels in .whl/ are installed first when pymatgen is missing (as training/gpu_run.sh).
# Environment: DEVICE (cuda), MATERIALS, PER_MODEL_MIN (1.5), NS ("10 25 50 100 400"), EPOCHS (40, fine-tunes),
# COMPILE (1: compile the left-out trainings).
set -uo pipefail
DATA_TAR=${1:-.devdata/definet_2d.tar.xz}
OUT=${2:-loo-run}
TOTAL_MIN=${3:-9}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
MATERIALS=${MATERIALS:-WSe2 hBN GaSe}
PER_MODEL_MIN=${PER_MODEL_MIN:-1.5}
NS=${NS:-10 25 50 100 400}
EPOCHS=${EPOCHS:-40}
COMPILE_ARG=(); [ "${COMPILE:-1}" = 1 ] && COMPILE_ARG=(--compile)
source "$(dirname "$0")/gpu_setup.sh"

left_out_model() {  # material seed: trains on every set but the material's, writes $WORK/loo_<material>_<seed>.pt
  local material=$1 seed=$2 sets=()
  for set in "$DATA"/high_density/* "$DATA"/low_density/*; do
    [ "$(basename "$set")" = "$material" ] || sets+=(--data "$set")
  done
  "$PY" -m definet_core train "${sets[@]}" --out "$WORK/loo_${material}_$seed.pt" --device "$DEVICE" \
    --hidden 64 --layers 4 --num-rbf 32 --radius 5 --max-neighbors 24 --lr 2e-3 --batch-size 16 \
    --time-budget "$PER_MODEL_MIN" --epochs 1000 --patience 1000 --seed "$seed" "${COMPILE_ARG[@]}"
  cp "$WORK/loo_${material}_$seed.log.jsonl" "$OUT/"
}

first=${MATERIALS%% *}
for material in $MATERIALS; do
  left_out_model "$material" 0
  [ "$material" = "$first" ] && left_out_model "$material" 1
  echo "left-out $material trained after $(( $(date +%s) - start )) s"
done
for material in $MATERIALS; do
  second=(); [ "$material" = "$first" ] && second=(--second "$WORK/loo_${material}_1.pt")
  "$PY" bench/new_host_curve.py --data "$DATA" --material "high_density/$material" \
    --base "$WORK/loo_${material}_0.pt" "${second[@]}" --ns $NS --epochs "$EPOCHS" --workdir "$WORK/curves" \
    --out "$OUT/new_host_$material.json" --plot "$OUT/new_host_$material.png"
  echo "curve of $material after $(( $(date +%s) - start )) s (budget $TOTAL_MIN min)"
done
echo "done after $(( $(date +%s) - start )) s"
