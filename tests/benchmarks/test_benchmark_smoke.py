"""Every benchmark runs end to end at a tiny size, so none can rot unnoticed.

Each runs as its users run it (``python benchmarks/NAME.py ...``, a fresh process), with
arguments that shrink the work to seconds; the test checks the exit status and the line that
carries the benchmark's result. The numbers themselves are not checked here: at these sizes they
mean nothing (the benchmarks exist to measure them at full size).

Not here: ``deploy_kernels.py`` (its shapes are ResNet-18's at 224x224, with no smaller size to
ask for) and ``gpu_check.sh`` (needs a GPU).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "step_time": (
        ["--arch", "resnet10t", "--input-size", "1", "16", "16", "--batch", "2",
         "--repeats", "1", "--warmup", "0", "--threads", "1"],
        r"\n  xnor +[\d.]+ ms .* float",
    ),
    "zoo_size": (
        ["--arch", "resnet10t"], r"packed, float16 float parts +[\d.]+ MiB +[\d.]+x smaller"
    ),
    "coverage": (
        ["--models", "resnet10t", "mobilenetv3_small_050", "--jobs", "2", "--budget", "300",
         "--no-resnet18-time", "--json", "coverage.json"],
        r"models: 2  tried: 2  skipped: 0  ok: 2  failed: 0",
    ),
    "deploy_detector": (
        ["--batch", "1", "--reps", "1", "--threads", "1"],
        r"ssd128_r18_mnist-det-small.py backbone\+neck, batch 1, 1 thread\(s\): [\d.]+x float32",
    ),
    "deploy_end_to_end": (
        ["--arch", "resnet10t", "--threads", "1", "--batch", "1", "--reps", "1"],
        r"batch 1, 1 thread\(s\): [\d.]+x float32 \(goal [\d.]+x\)",
    ),
    "compiled_traffic": (
        ["--arch", "resnet10t", "--input-size", "1", "32", "32", "--batches", "2", "4",
         "--amp", "none"],
        r"adabin/float +[\d.]+x",
    ),
    "finetune": (
        ["--arch", "resnet10t", "--data", "mnist5k[:128]", "--seeds", "0", "--teacher-epochs",
         "1", "--epochs", "2", "--batch-size", "64", "--step-batch-sizes", "4",
         "--step-repeats", "1", "--out", "runs"],
        r"xnor \+ distillation +[\d.]+ \+- [\d.]+ +[\d.]+ \(",
    ),
    "detection": (  # --demo: make demo-det's path (publish, load back, figure) at a tiny size
        ["--demo", "--trainval", "4", "--test", "2", "--float-iters", "2",
         "--student-iters", "2", "--batch", "1", "--threads", "1", "--out", "runs"],
        r"identical outputs\n.*detections\.png\n(.*\n)*ssd +binary_distill +2 +[\d.]+ ",
    ),
    "mmdet_sweep": (
        ["--configs", "retinanet/retinanet_r18_fpn_1x_coco.py",
         "yolox/yolox_tiny_8xb8-300e_coco.py", "--json", "sweep.json"],
        r"configs: 2  ok: 2  failed: 0  skipped: 0  pass rate: 100\.0% of 2 tried",
    ),
    "search": (
        ["--archs", "resnet10t", "--seeds", "0", "--teacher-epochs", "1", "--epochs", "1",
         "--train-size", "64", "--teacher-size", "64", "--test-size", "32",
         "--calibration-size", "16", "--curve", "0.0", "1.0", "--threads", "1", "--out", "runs"],
        r"resnet10t: teacher [\d.]+%, search",
    ),
}  # fmt: skip
SLOW = {"compiled_traffic", "finetune", "search"}
MMDET = {"detection", "mmdet_sweep", "deploy_detector"}


def _param(name: str):
    marks = [pytest.mark.slow] if name in SLOW | MMDET else []
    if name in MMDET:
        marks.append(pytest.mark.mmdet)
    return pytest.param(name, id=name, marks=marks)


def test_every_benchmark_script_has_a_smoke_run() -> None:
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts - {"sweep_pool"} == set(CASES) | {"deploy_kernels"}


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_benchmark_runs_at_a_tiny_size(name: str, tmp_path: Path) -> None:
    args, expected = CASES[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert re.search(expected, proc.stdout), proc.stdout[-4000:]
