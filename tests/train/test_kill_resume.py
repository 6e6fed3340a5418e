"""A training process killed with SIGKILL mid-epoch resumes into a complete, identical run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from autobin.train import load_checkpoint

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import timm, torch
    import autobin
    from autobin.train import Callback, finetune, train_float

    out, kill_at = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = timm.create_model("resnet10t", num_classes=10, in_chans=1)
    cfg = {"batch_size": 64, "seed": 3, "progress": False, "plots": False}
    # resume=True: the second launch reuses the finished teacher run instead of refusing it
    train_float(teacher, "digits", epochs=1, out_dir=out + "/teacher", config=cfg, resume=True)
    student = autobin.binarize(teacher, example_inputs=(torch.zeros(2, 1, 8, 8),))

    class KillMidEpoch(Callback):
        def on_step_end(self, state):
            if state.step == kill_at:  # no cleanup, no exception handling: a real kill
                os.kill(os.getpid(), signal.SIGKILL)

    finetune(student, None, "digits", epochs=3, out_dir=out + "/student", resume=True,
             config=cfg, callbacks=[KillMidEpoch()])
    """
)


def _run(out, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    full = _run(tmp_path / "full", kill_at=-1)
    assert full.returncode == 0, full.stderr[-2000:]

    steps_per_epoch = 23  # 1,437 digits / 64, rounded up
    killed = _run(tmp_path / "killed", kill_at=steps_per_epoch + 5)  # inside epoch 2
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed/student/last.pt")["epoch"] == 1

    resumed = _run(tmp_path / "killed", kill_at=-1)  # same command: resume=True continues
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a = load_checkpoint(tmp_path / "full/student/last.pt")
    b = load_checkpoint(tmp_path / "killed/student/last.pt")
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
