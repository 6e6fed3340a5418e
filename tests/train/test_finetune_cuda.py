"""The training loop on CUDA: auto device with autocast, fp16 gradient scaling, exact resume.

Skipped where no CUDA device is present (CI); run on a GPU machine with
``CUBLAS_WORKSPACE_CONFIG=:4096:8 pytest -m cuda tests/train/test_finetune_cuda.py``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from autobin.data import load_dataset
from autobin.nn import AdaBinConv2d, Maxout
from autobin.train import Callback, LoopState, finetune, load_checkpoint, train_float

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FAST = {"progress": False, "plots": False, "batch_size": 32}


def _float_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10),
    )  # fmt: skip


def _student(teacher: nn.Module) -> nn.Module:
    student = copy.deepcopy(teacher).cpu()
    student[3] = AdaBinConv2d.from_float(student[3], weight_estimator="ede")
    student[5] = Maxout(16)
    return student


@pytest.fixture(scope="module")
def digits() -> tuple[Subset, Subset]:
    return (
        Subset(load_dataset("digits", "train"), range(640)),
        Subset(load_dataset("digits", "test"), range(320)),
    )


def test_auto_device_autocast_two_step(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    float_run = train_float(teacher, train, val, epochs=4, lr=1e-2, out_dir=tmp_path / "f", **FAST)
    assert next(teacher.parameters()).is_cuda
    assert float_run.final_val_acc > 30.0
    student = _student(teacher)
    result = finetune(student, teacher, train, val, epochs=4, lr=5e-3, two_step=True,
                      out_dir=tmp_path / "s", **{**FAST, "plots": True})  # fmt: skip
    assert next(student.parameters()).is_cuda
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert result.final_val_acc > 20.0
    state = load_checkpoint(tmp_path / "s" / "last.pt")
    assert "cuda" in state["rng"] and state["epoch"] == 4
    assert set(result.plots) == {"curves", "binary_sets"}


class _KillAt(Callback):
    def on_step_end(self, state: LoopState) -> None:
        if state.epoch == 1 and state.batch_index == 5:
            raise KeyboardInterrupt


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_resume_exact_on_cuda(digits, tmp_path: Path, precision: str) -> None:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    train, val = digits
    options = {**FAST, "epochs": 2, "precision": precision, "lr": 1e-2}
    full = _student(_float_net())
    finetune(full, _float_net(), train, val, out_dir=tmp_path / "full", **options)
    with pytest.raises(KeyboardInterrupt):
        finetune(_student(_float_net()), _float_net(), train, val, out_dir=tmp_path / "run",
                 callbacks=[_KillAt()], **options)  # fmt: skip
    resumed = _student(_float_net())
    finetune(resumed, _float_net(), train, val, out_dir=tmp_path / "run", resume=True, **options)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_compiled_channels_last_bf16_finetune(digits, tmp_path: Path) -> None:
    train, val = digits
    teacher = _float_net()
    student = _student(teacher)
    result = finetune(student, teacher, train, val, epochs=2, lr=5e-3, compile=True,
                      precision="bf16", out_dir=tmp_path, **FAST)  # fmt: skip
    conv = student[3].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)  # the default
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["config"]["compile"] and not any("_orig_mod" in k for k in state["model"])
