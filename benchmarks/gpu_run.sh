#!/usr/bin/env bash
# The device-machine command for benchmarks/gpu_check.py: install the carried wheels (.whl: nibabel, pydicom,
# pylibjpeg, SimpleITK, which the GPU image lacks), put src/ on the path, record the card, run the sections.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p "$OUT/r"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/r/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)" \
  | tee -a "$OUT/r/gpu.txt"
python3 benchmarks/gpu_check.py --out "$OUT/r" "$@" 2>&1 | tee "$OUT/r/gpu_check.log"
# at most 8 files come back from $OUT: one archive
tar czf "$OUT/results.tgz" -C "$OUT" r && rm -rf "$OUT/r"
