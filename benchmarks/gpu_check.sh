#!/usr/bin/env bash
# The GPU check of issue 11, for a machine with one CUDA GPU (a few minutes on an H100/H200):
#   1. the CUDA tests (training loop on CUDA: autocast, fp16 scaling, exact resume, compiled
#      channels-last finetune), the compile tests (whole-student compiled gradients equal eager,
#      on the CPU and on CUDA, under this machine's torch) and the fused binary conv tests;
#   2. training step time of the float resnet18 and its adabin student at 224x224, batch 256,
#      bf16 autocast, NCHW and channels-last, eager and torch.compile: ms, img/s, peak memory,
#      bytes kept for backward, and each model's best configuration against the float model's
#      best;
#   3. the memory traffic of the compiled step's Triton kernels, float vs adabin, per image
#      (benchmarks/compiled_traffic.py --device cuda; the same count on a CPU is the estimate
#      the README reports);
#   4. training step time of the paper's CIFAR models (resnet20_cifar, resnet18_cifar,
#      vgg_small_cifar with adabin-reference) at 32x32, batch 128, bf16, eager: the measured
#      figures behind the README's per-epoch estimates of configs/ (CIFAR=0 skips it).
# Usage (repository root):
#   [PYTHON=python3] [REPEATS=15] [TRAFFIC=0] [CIFAR=0] bash benchmarks/gpu_check.sh
# (Several processes on one GPU are not possible with NCCL; the multi-process path is tested
# on the CPU with gloo in tests/train/test_torchrun.py.)
set -uo pipefail
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== 1. CUDA and compile tests"
CUBLAS_WORKSPACE_CONFIG=:4096:8 $PY -m pytest -q -p no:cacheprovider \
    tests/train/test_finetune_cuda.py tests/train/test_compile.py \
    tests/core/test_devices_dtypes.py tests/core/test_fused_conv.py || status=1

echo "== 2. step time, batch 256, 224x224, bf16"
reps=${REPEATS:-15}
$PY benchmarks/step_time.py --device cuda --amp bf16 --input-size 3 224 224 --batch 256 \
    --variants adabin --layouts nchw channels_last --modes eager compile \
    --repeats "$reps" --warmup 3 || status=1

if [ "${TRAFFIC:-1}" = 1 ]; then  # TRAFFIC=0 skips it (four more compilations, 2-3 minutes)
    echo "== 3. compiled step's kernel traffic (Triton), float vs adabin"
    $PY benchmarks/compiled_traffic.py --device cuda || status=1
fi

if [ "${CIFAR:-1}" = 1 ]; then
    echo "== 4. step time of the CIFAR models, batch 128, 32x32, bf16, eager"
    for arch in resnet20_cifar resnet18_cifar vgg_small_cifar; do
        $PY benchmarks/step_time.py --arch "$arch" --device cuda --amp bf16 --input-size 3 32 32 \
            --batch 128 --variants adabin-reference --layouts channels_last --modes eager \
            --repeats "$reps" --warmup 3 || status=1
    done
fi
exit $status
