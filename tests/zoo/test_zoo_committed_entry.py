"""The entry committed to the repository's zoo loads and reaches its recorded accuracy."""

from __future__ import annotations

from pathlib import Path

import torch

import autobin
from autobin.data import load_dataset
from autobin.train import evaluate

ZOO = Path(__file__).resolve().parents[2] / "zoo"
NAME = "resnet18.adabin_mnist5k"


def test_committed_entry_is_listed_and_verifies():
    names = [entry["name"] for entry in autobin.zoo.list_models(zoo_dir=ZOO)]
    assert NAME in names
    autobin.zoo.verify(NAME, zoo_dir=ZOO)


def test_committed_entry_reaches_its_recorded_accuracy_on_mnist5k_test():
    config = autobin.zoo.show(NAME, zoo_dir=ZOO)
    recorded = config["metrics"]["top1_mnist5k_test"]
    model = autobin.zoo.load(NAME, zoo_dir=ZOO)
    assert not model.training
    binary = [m for m in model.modules() if isinstance(m, autobin.nn.BinaryLayer)]
    assert len(binary) == 16 and all(m.frozen for m in binary)
    with torch.no_grad():
        acc = evaluate(model, load_dataset("mnist5k", "test"))["acc"]
    # 1,000 test images: accuracy moves in steps of 0.1 points, recorded rounded to 2 decimals
    assert round(acc, 2) == recorded
    assert recorded > 90.0
