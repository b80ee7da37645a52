#!/usr/bin/env bash
# Issue 15: ours + the per-edge radial term on all of the public 2D data (LD 5,633/material), the high-density
# train pairs seen COPIES times per epoch (train-only copies in the view). Resumable.
#   BUDGET=60 COPIES=3 LR=5e-4 bash training/alldata_cpu.sh NAME          # fine-tunes definet_2d_v2
#   INIT=none BUDGET=95 COPIES=5 LR=2e-3 bash training/alldata_cpu.sh NAME  # from scratch, v2's size and graph
#   GRAPH="--radius 6 --max-neighbors 50" INIT=none ...                    # from scratch on the 6 A / 50 graph
#   ARCH=reference GRAPH=... INIT=none LR=1e-3 ...                          # the paper's architecture, from scratch
#   INIT=definet_2d_v6 LR=1e-3 BUDGET=90 COPIES=3 ...                      # a warm restart of the default's 2D model
#   EXTRA="--loss-balance material" ...                                     # more `definet train` arguments, last
#   SETS=low_density INIT=definet_2d_dilute_v1 ...                          # a specialist on one part of the view
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; COPIES=${COPIES:-3}; D=$(realpath ../shared/data/definet_2d); V=experiments/views/all_hd$COPIES
source training/cpu_views.sh
for s in $D/low_density/*; do view_of $s $V/low_density/$(basename $s); done
for s in $D/high_density/*; do view_with_copies $s $V $COPIES; done
INIT=${INIT:-definet_2d_v2}
case ${ARCH:-ours} in
  ours) model="--num-rbf 32 --edge-displacement true" ;;  # a fine-tune adds the term to INIT (exactly its function)
  reference) model="--arch reference --num-rbf 128" ;;
  *) echo "ARCH=$ARCH: not ours or reference" >&2; exit 2 ;;
esac
start="--init $INIT --edge-displacement true"
[ "$INIT" = none ] && start="--hidden 64 --layers 4 $model ${GRAPH:---radius 5 --max-neighbors 24} --seed 0"
mkdir -p experiments/alldata; out=experiments/alldata/$NAME.pt
.venv/bin/definet train --data $V${SETS:+/$SETS} --out $out --resume $start \
  --lr ${LR:-5e-4} --schedule cosine --warmup-steps 200 --batch-size 8 --epochs 100 --patience 100 \
  --time-budget ${BUDGET:-60} --compile --device cpu ${EXTRA:-}
