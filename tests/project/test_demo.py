"""``autobin demo`` end to end at a tiny size: train, binarize, finetune, publish, load back."""

from __future__ import annotations

import pytest
import torch

import autobin
from autobin.cli import main


@pytest.mark.slow
def test_demo_runs_the_whole_story_on_a_slice(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--data", "mnist5k[:256]", "--teacher-epochs", "1",
            "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "float teacher  binary student" in text
    assert "loaded back: accuracy" in text and "outputs identical to the trained model" in text
    for name in ("teacher/best.pt", "best.pt", "last.pt", "metrics.json", "run.json"):
        assert (out / name).is_file(), name
    model = autobin.load("resnet18.adabin_mnist5k", zoo_dir=out / "zoo")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
