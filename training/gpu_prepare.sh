#!/usr/bin/env bash
# Prepares, on this machine, what the one-call GPU scripts (gpu_run.sh, loo_run.sh) carry to the GPU machine:
# the whole 2D dataset compressed (.devdata/definet_2d.tar.xz, ~15 MB) and pymatgen's wheels for a machine that
# has torch and torch_geometric but not pymatgen (.whl/, ~8 MB). Both stay out of git (.git/info/exclude), so a
# `run` call names them in carry:
#
#   bash training/gpu_prepare.sh            # once per machine; reruns reuse what is there
#   run(command='bash training/gpu_run.sh .devdata/definet_2d.tar.xz "$OUT" 8.5', carry=[".devdata", ".whl"])
#
# Environment: SHARED_DATA (../shared/data), GPU_PYTHON (the GPU machine's Python, 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED_DATA=${SHARED_DATA:-../shared/data}
GPU_PYTHON=${GPU_PYTHON:-3.12}
[ -d "$SHARED_DATA/definet_2d" ] || { echo "gpu_prepare: $SHARED_DATA/definet_2d not found (set SHARED_DATA)" >&2; exit 2; }
mkdir -p .git/info .devdata .whl
for path in /.devdata/ /.whl/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done
if [ ! -s .devdata/definet_2d.tar.xz ]; then
  tar -C "$SHARED_DATA" -cf - definet_2d | xz -6 -T2 > .devdata/definet_2d.tar.xz.part
  mv .devdata/definet_2d.tar.xz.part .devdata/definet_2d.tar.xz
fi
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl pymatgen pymatgen-core monty orjson palettable spglib uncertainties \
  "bibtexparser<2" ruamel.yaml ruamel.yaml.clib
du -sh .devdata/definet_2d.tar.xz .whl
echo 'carry=[".devdata", ".whl"]'
