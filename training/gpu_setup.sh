# Sourced by the one-call GPU scripts (gpu_run.sh, loo_run.sh): a work directory, the console log in OUT, the
# graph cache, pymatgen from the wheels in .whl/ when the machine lacks it, and the data tarball unpacked.
# Needs OUT, PY and DATA_TAR; sets start, WORK and DATA.
start=$(date +%s)
WORK=$(mktemp -d /tmp/definet-gpu.XXXX)
mkdir -p "$OUT"
exec > >(tee "$OUT/console.log") 2>&1
export PYTHONUNBUFFERED=1 DEFINET_CACHE="$WORK/cache"
if ! "$PY" -c "import pymatgen.core" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
"$PY" -c "import torch, torch_geometric, pymatgen.core; print('torch', torch.__version__, 'pyg', torch_geometric.__version__)"
tar -xJf "$DATA_TAR" -C "$WORK" && DATA="$WORK/$(tar -tJf "$DATA_TAR" | head -1 | cut -d/ -f1)"
echo "data in $DATA after $(( $(date +%s) - start )) s"
