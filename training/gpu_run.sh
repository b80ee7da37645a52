#!/usr/bin/env bash
# One whole GPU training run inside one call of at most ~9 minutes (README: "Training on a GPU").
#
#   bash training/gpu_run.sh [DATA_TARBALL] [OUT_DIR] [TOTAL_MINUTES]
#
# Unpacks the compressed dataset, builds graphs with every core, times hidden 128/192/256 (fp32 and
# bf16) and trains the largest that reaches 30 epochs in what is left of TOTAL_MINUTES, evaluates
# the val splits, and times prediction on CUDA for the shipped and the new model. OUT_DIR receives
# the best checkpoint (float16 weights), its log, the val JSON, the benchmark JSONs and the console
# log; the checkpoint and log are copied there every 20 s, so a run cut short still leaves its best.
# Wheels in .whl/ (pymatgen and the packages it needs) are installed first when pymatgen is missing.
# Environment: DEVICE (cuda), HIDDEN (candidate sizes, "128 192 256"), BATCH (16), LR (5e-4), INIT (a checkpoint
# to fine-tune, e.g. definet_2d_large: its size and graph settings are used and no sizing is done), SEED (0),
# COMPILE (1: torch.compile the training forward pass, and time compiled prediction too; the sizing times eager steps),
# EXTRA (more `definet train` arguments, after and so overriding the defaults above; the reference size, issue 15:
# HIDDEN=512 EXTRA="--arch reference --num-rbf 128 --lr 1e-4").
set -uo pipefail
DATA_TAR=${1:-.devdata/definet_2d.tar.xz}
OUT=${2:-gpu-run}
TOTAL_MIN=${3:-9}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
HIDDEN=${HIDDEN:-128 192 256}
BATCH=${BATCH:-16}
LR=${LR:-5e-4}
SEED=${SEED:-0}
COMPILE_ARG=(); [ "${COMPILE:-0}" = 1 ] && COMPILE_ARG=(--compile)
# the default model: ours + the per-edge radial term + the reference's 128 Gaussians at 6 A / 50 neighbours (the
# best row of docs/reference_architecture.md at equal compute), the best epoch by the mean val ratio
if [ -n "${INIT:-}" ]; then MODEL=(--init "$INIT"); else MODEL=(--radius 6 --max-neighbors 50 --radial-basis gaussian
  --num-rbf 128 --edge-displacement true --layers 4 --hidden-candidates $HIDDEN --min-epochs 30); fi
source "$(dirname "$0")/gpu_setup.sh"
mkdir -p "$WORK/run"

CKPT="$WORK/run/definet_2d_gpu.pt"
( while sleep 20; do cp "$CKPT" "$WORK/run/definet_2d_gpu.log.jsonl" "$OUT/" 2>/dev/null; done ) &
copier=$!
# reserve: graph building and sizing before the budget starts, final validation and benchmarks after it
budget=$("$PY" -c "print(round(max(0.3, $TOTAL_MIN - ($(date +%s) - $start) / 60 - ${RESERVE_MIN:-3.2}), 2))")
echo "training budget: $budget min"
"$PY" -m definet_core train --data "$DATA" --out "$CKPT" --device "$DEVICE" "${MODEL[@]}" \
  --batch-size "$BATCH" --lr "$LR" --min-lr 1e-6 --schedule cosine --warmup-steps 200 --weight-decay 0 --amsgrad \
  --loss-balance material --select-on ratio --time-budget "$budget" --epochs 1000 --patience 1000 --half-checkpoint \
  --seed "$SEED" "${COMPILE_ARG[@]}" ${EXTRA:-}
kill "$copier" 2>/dev/null
cp "$CKPT" "$WORK/run/definet_2d_gpu.log.jsonl" "$OUT/"
echo "trained after $(( $(date +%s) - start )) s"
"$PY" -m definet_core evaluate --data "$DATA" --split val --checkpoint "$CKPT" --device "$DEVICE" \
  --json "$OUT/val_gpu.json"
for model in shipped gpu; do
  ckpt_arg=(); [ "$model" = gpu ] && ckpt_arg=(--checkpoint "$CKPT")
  "$PY" bench/bench_predict.py --data "$DATA" --n 64 --batch-sizes 1 8 64 --devices "$DEVICE" --chgnet 0 \
    "${ckpt_arg[@]}" "${COMPILE_ARG[@]}" --json "$OUT/bench_${model}_$DEVICE.json"
done
echo "done after $(( $(date +%s) - start )) s"
