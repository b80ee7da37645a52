#!/usr/bin/env bash
# Issue 15 ablations at equal compute (docs/reference_architecture.md): WHAT=<run> [SEED=1] bash training/ablation_cpu.sh
# runs: ours ours_lr1e-3 edge reference reference_lr1e-3 reference_lr1e-4 ours_6_50 ours_6_50_edge
#       ours_6_50_edge_va ours_6_50_edge_gauss ours_6_50_edge_refupdate hd_only ld_only (resumable)
# Data: the six high-density sets + the first 900 low-density train pairs per material (a view of ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
D=$(realpath ../shared/data/definet_2d); V=experiments/views/all900
source training/cpu_views.sh
for s in $D/high_density/*; do view_of $s $V/high_density/$(basename $s); done
for s in $D/low_density/*; do view_of $s $V/low_density/$(basename $s) 900; done
SEED=${SEED:-0}
C="--hidden 64 --layers 4 --schedule cosine --warmup-steps 200 --batch-size 8 --epochs 6 --seed $SEED --compile --device cpu"
G="--radius 6 --max-neighbors 50"  # the reference's graph
O="--num-rbf 32 --radius 5 --max-neighbors 24"; R="--arch reference --num-rbf 128 $G"
data=$V
case $WHAT in
  ours) run="--lr 2e-3 $O" ;;
  ours_lr1e-3) run="--lr 1e-3 $O" ;;
  edge) run="--lr 2e-3 $O --edge-displacement true" ;;
  reference) run="--lr 2e-3 $R" ;;
  reference_lr1e-3) run="--lr 1e-3 $R" ;;
  reference_lr1e-4) run="--lr 1e-4 --amsgrad --weight-decay 0 $R" ;;
  ours_6_50) run="--lr 2e-3 --num-rbf 32 $G" ;;
  ours_6_50_edge) run="--lr 2e-3 --num-rbf 32 $G --edge-displacement true" ;;
  ours_6_50_edge_va) run="--lr 2e-3 --num-rbf 32 $G --edge-displacement true --vector-activation true" ;;
  ours_6_50_edge_gauss) run="--lr 2e-3 --num-rbf 128 --radial-basis gaussian $G --edge-displacement true" ;;
  ours_6_50_edge_refupdate) run="--lr 2e-3 --num-rbf 32 $G --edge-displacement true --scalar-update reference" ;;
  hd_only) run="--lr 2e-3 $O"; data=$V/high_density ;;
  ld_only) run="--lr 2e-3 $O"; data=$V/low_density ;;
  *) echo "WHAT=$WHAT: not a run of this script" >&2; exit 2 ;;
esac
mkdir -p experiments/ablation
# --resume continues from <out>.last.pt where there is one and starts afresh where there is none
name=$WHAT; [ "$SEED" = 0 ] || name=${WHAT}_seed$SEED  # seed 0 keeps the names of the table's runs
.venv/bin/definet train --data $data $C $run --out experiments/ablation/$name.pt --resume
