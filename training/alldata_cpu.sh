#!/usr/bin/env bash
# Issue 15: definet_2d_v2 + the per-edge radial term, fine-tuned on all of the public 2D data (LD 5,633/material),
# the high-density train pairs seen COPIES times per epoch (train-only copies in the view). Resumable.
#   BUDGET=60 COPIES=3 LR=5e-4 bash training/alldata_cpu.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; COPIES=${COPIES:-3}; D=$(realpath ../shared/data/definet_2d); V=experiments/views/all_hd$COPIES
for s in $D/high_density/* $D/low_density/*; do
  name=$(basename $s); density=$(basename $(dirname $s)); mkdir -p $V/$density/$name
  for f in $s/*; do ln -sfn $f $V/$density/$name/$(basename $f); done
  if [ $density = high_density ]; then
    for c in $(seq 2 $COPIES); do
      mkdir -p $V/high_density_copy$c/$name
      for f in $s/CIF $s/train.csv $(ls $s/*.cif); do ln -sfn $f $V/high_density_copy$c/$name/$(basename $f); done
    done
  fi
done
mkdir -p experiments/alldata; out=experiments/alldata/$NAME.pt
resume=(); [ -f "${out%.pt}.last.pt" ] && resume=(--resume)
.venv/bin/definet train --data $V --out $out "${resume[@]}" --init definet_2d_v2 --edge-displacement true \
  --lr ${LR:-5e-4} --schedule cosine --warmup-steps 200 --batch-size 8 --epochs 100 --patience 100 \
  --time-budget ${BUDGET:-60} --compile --device cpu
