"""The obvious calls: DataLoaders, publishable run directories, checks before any work."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from tiny_nets import tiny_float_net, tiny_student
from torch import nn
from torch.utils.data import DataLoader, Subset

import autobin
from autobin.cli.main import main as cli
from autobin.data import load_dataset
from autobin.train import finetune, load_checkpoint

FAST = {"progress": False, "plots": False, "device": "cpu"}


@pytest.fixture(scope="module")
def digits() -> tuple[Subset, Subset]:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    return Subset(train, range(160)), Subset(test, range(64))


def _pair() -> tuple[nn.Module, nn.Module]:
    teacher = tiny_float_net()
    return tiny_student(teacher), teacher


def test_dataloaders_train_exactly_like_their_datasets(digits, tmp_path: Path) -> None:
    train, val = digits
    a, teacher = _pair()
    ref = finetune(a, teacher, train, val, epochs=2, batch_size=32, out_dir=tmp_path / "d",
                   **FAST)  # fmt: skip
    b, teacher = _pair()
    loaders = DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=50)
    got = finetune(b, teacher, *loaders, epochs=2, out_dir=tmp_path / "l", **FAST)
    for key, value in a.state_dict().items():  # the loop draws the seeded order itself
        assert torch.equal(value, b.state_dict()[key]), key
    assert got.history[-1]["val_acc"] == ref.history[-1]["val_acc"]
    config = load_checkpoint(tmp_path / "l" / "last.pt")["config"]
    assert (config["batch_size"], config["eval_batch_size"]) == (32, 50)  # the loaders' sizes


def test_a_loader_with_its_own_sampler_is_used_as_given(digits, tmp_path: Path) -> None:
    train, val = digits
    order = list(reversed(range(len(train))))
    loader = DataLoader(train, batch_size=40, sampler=order)
    student, teacher = _pair()
    result = finetune(student, teacher, loader, val, epochs=2, out_dir=tmp_path, **FAST)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2 * len(loader) == 8
    assert result.history[-1]["val_acc"] is not None


def test_finetune_run_directory_is_publishable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    float_model = timm.create_model("resnet10t", num_classes=10, in_chans=1)
    student = autobin.binarize(float_model, example_inputs=(torch.zeros(2, 1, 8, 8),))
    train = Subset(load_dataset("digits", "train"), range(64))
    test = Subset(load_dataset("digits", "test"), range(32))
    finetune(student, float_model, train, test, epochs=1, batch_size=32, out_dir=tmp_path / "run",
             **FAST)  # fmt: skip
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["arch"] == "resnet10t" and run["input_size"] == [1, 8, 8]
    assert run["arch_kwargs"] == {"num_classes": 10, "in_chans": 1}
    assert run["dataset"] == "digits" and run["recipe"]["name"] == "adabin"
    zoo = tmp_path / "zoo"
    assert cli(["zoo", "--zoo-dir", str(zoo), "publish", str(tmp_path / "run"), "r10t.t"]) == 0
    loaded = autobin.zoo.load("r10t.t", zoo_dir=zoo)
    student.load_state_dict(load_checkpoint(tmp_path / "run" / "best.pt")["model"])
    student.eval()
    x = torch.stack([test[i][0] for i in range(8)])
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        (None, "training config file .*missing.yaml' does not exist"),
        ("lr: 0.001\nbatchsize: 64\n", "unknown training config key 'batchsize'.*'batch_size'"),
        ("epochs: 0\n", "'epochs': got 0, expected a value > 0"),
    ],
    ids=["missing-file", "unknown-key", "bad-value"],
)
def test_cli_train_checks_the_config_before_any_work(tmp_path, capsys, config_text, message):
    config = tmp_path / "missing.yaml"
    if config_text is not None:
        config = tmp_path / "train.yaml"
        config.write_text(config_text)
    out = tmp_path / "run"
    start = time.perf_counter()
    code = cli(["train", "resnet10t", "--data", "digits", "--config", str(config), "-o", str(out)])
    assert code == 2 and time.perf_counter() - start < 20  # no teacher was trained first
    err = capsys.readouterr().err
    assert err.startswith("autobin train: error:") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_cli_train_refuses_an_existing_run_before_training_a_teacher(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert cli(["train", "resnet10t", "--data", "digits", "-o", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert not (out / "teacher").exists() and (out / "metrics.json").read_text() == "{}"


def test_python_dash_m_autobin() -> None:
    proc = subprocess.run([sys.executable, "-m", "autobin", "train", "--help"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "--compile" in proc.stdout and "--overwrite" in proc.stdout


@pytest.mark.slow
def test_cli_train_with_the_same_seed_repeats_the_run(tmp_path, capsys) -> None:
    """The seed decides everything, the teacher's initial weights included."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        argv = ["train", "resnet10t", "--data", "digits", "--epochs", "1", "--teacher-epochs", "1"]
        assert cli([*argv, "--seed", "3", "-o", str(out)]) == 0
    capsys.readouterr()
    first, second = (load_checkpoint(out / "teacher" / "last.pt")["model"] for out in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    timing = {"train_img_per_s", "train_time_s"}
    first, second = (
        [{k: v for k, v in epoch.items() if k not in timing} for epoch in history]
        for history in (json.loads((out / "metrics.json").read_text())["history"] for out in runs)
    )
    assert first == second and "train_loss" in first[0] and "val_acc" in first[0]
