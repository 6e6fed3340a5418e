#!/bin/sh
# Runs the deploy benchmarks on a borrowed machine (python3 with torch and timm, g++), writing
# to $OUT: CPU identity, the per-layer kernel table and the end-to-end resnet18 tables.
# Usage: OUT=/some/dir sh benchmarks/deploy_device_run.sh
set -e
export PYTHONPATH=. PYTHONUNBUFFERED=1 AUTOBIN_CACHE_DIR=/tmp/autobin-cache
lscpu > "$OUT/lscpu.txt" 2>&1 || true
python3 -c "import torch; print(torch.__version__, torch.__config__.parallel_info())" > "$OUT/torch.txt" 2>&1
python3 -c "from autobin.deploy import available_kernels; print(available_kernels())"
python3 benchmarks/deploy_kernels.py --rounds 5 --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.txt"
python3 -m autobin.cli.main bench resnet18 --recipe adabin --threads 2 --reps 20 2>&1 | tee "$OUT/e2e_t2.txt"
python3 -m autobin.cli.main bench resnet18 --recipe adabin --threads 1 --reps 20 2>&1 | tee "$OUT/e2e_t1.txt"
