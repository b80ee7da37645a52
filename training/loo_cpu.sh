#!/usr/bin/env bash
# Left-out model for issue 14: every 2D set but MATERIAL (both densities; low density: the first 900 train
# pairs, as the shipped model), the shipped recipe, EPOCHS (25) epochs, 1 thread.
#   bash training/loo_cpu.sh MATERIAL SEED   (resumable: rerun the same command)
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1; S=${2:-0}; D=$(realpath ../shared/data/definet_2d); V=experiments/views/loo_$M
source training/cpu_views.sh
for s in $D/high_density/*; do [ "$(basename $s)" = "$M" ] || view_of $s $V/high_density/$(basename $s); done
for s in $D/low_density/*; do [ "$(basename $s)" = "$M" ] || view_of $s $V/low_density/$(basename $s) 900; done
mkdir -p experiments/loo; out=experiments/loo/loo_${M}_$S.pt
.venv/bin/definet train --data $V --out $out --resume --hidden 64 --layers 4 --num-rbf 32 --radius 5 \
  --max-neighbors 24 --lr 2e-3 --batch-size 8 --epochs ${EPOCHS:-25} --seed $S --compile --device cpu
