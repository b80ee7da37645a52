#!/usr/bin/env bash
# Issue 15: fine-tune a 2D model on the high-density DFT pairs (COPIES times an epoch) beside pseudo-labelled sets
# written by `definet pseudo-label` (each a root holding BP/, GaSe/, ...). Resumable (--resume); the view holds
# symlinks only. The written domain is the union of the data's and INIT's (--domain-from): packageable as written.
#   PSEUDO="experiments/pseudo/ens experiments/pseudo/ens2" INIT=definet_2d_v10 LR=1e-4 BUDGET=60 \
#     EXTRA="--edge-displacement true" bash training/pseudo_cpu.sh NAME      # the 2D route
#   MATERIALS=hBN INIT=definet_2d_v6_hbn LR=5e-5 BUDGET=35 ... NAME          # one material's sets (a specialist)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; COPIES=${COPIES:-3}; D=$(realpath ../shared/data/definet_2d/high_density); V=experiments/views/pseudo_$NAME
source training/cpu_views.sh
for s in $D/${MATERIALS:-*}; do view_with_copies $s $V $COPIES; done
i=0
for p in ${PSEUDO:?PSEUDO: the pseudo-labelled roots to train on}; do
  i=$((i + 1))
  for s in $(realpath $p)/${MATERIALS:-*}; do view_of $s $V/pseudo$i/$(basename $s); done
done
mkdir -p experiments/alldata
.venv/bin/definet train --data $V --out experiments/alldata/$NAME.pt --resume --init ${INIT:?INIT: the checkpoint to start from} \
  --lr ${LR:-1e-4} --schedule cosine --warmup-steps ${WARMUP:-200} --batch-size 8 --epochs 100 --patience 100 \
  --time-budget ${BUDGET:-60} --compile --device cpu --loss-balance material --select-on ratio --loss component-l1 \
  --domain-from $INIT \
  ${EXTRA:-}
