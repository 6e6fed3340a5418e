"""The paper's training configs (configs/*.yaml): each loads and validates with the paper's
settings, and each CIFAR config trains end to end through ``autobin train`` on CIFAR data in the
release's python-batch format (a few hundred images, one epoch; also under torchrun)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autobin import zoo
from autobin.cli import main
from autobin.nn import AdaBinConv2d, Maxout
from autobin.train import TrainConfig, list_train_configs, load_train_config
from autobin.train.config import builtin_configs_dir

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.filterwarnings("ignore::autobin.data.cifar.CifarDataWarning"),  # a subset
    pytest.mark.filterwarnings("ignore:This DataLoader will create"),  # num_workers 4, 2 cores
]
CIFAR = {  # config -> registered architecture
    "cifar10-resnet20": "resnet20_cifar",
    "cifar10-resnet18": "resnet18_cifar",
    "cifar10-vgg-small": "vgg_small_cifar",
}
PAPER = {  # what ADABIN.md section 7 and the released scripts say
    "cifar10-resnet20": dict(epochs=400, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                             weight_decay=1e-4, kd_weight=0.0, ce_weight=1.0, two_step=False),
    "imagenet-resnet18-one-step": dict(epochs=120, optimizer="sgd", lr=0.1, weight_decay=1e-5,
                                       kd_weight=0.0, ce_weight=1.0, two_step=False),
    "imagenet-resnet18-two-step": dict(epochs=256, optimizer="adam", lr=2.5e-3, two_step=True,
                                       weight_decay=1e-5, step2_weight_decay=0.0, kd_weight=1.0,
                                       ce_weight=0.0, temperature=1.0),
}  # fmt: skip
PAPER["cifar10-resnet18"] = PAPER["cifar10-vgg-small"] = PAPER["cifar10-resnet20"]


def test_every_config_file_loads_by_name_and_by_path():
    assert list_train_configs() == sorted(PAPER)
    assert builtin_configs_dir().resolve() == (ROOT / "configs").resolve()
    for name, expected in PAPER.items():
        cfg = load_train_config(name)
        assert cfg == TrainConfig.from_yaml(ROOT / "configs" / f"{name}.yaml")
        assert {k: getattr(cfg, k) for k in expected} == expected, name
        assert cfg.ede_schedule and (cfg.ede_t_min, cfg.ede_t_max) == (1e-3, 10.0)


def test_global_batches_of_the_imagenet_configs():
    # batch_size is per process; the files are written for 8 processes
    assert 8 * load_train_config("imagenet-resnet18-one-step").batch_size == 256  # released
    two_step = load_train_config("imagenet-resnet18-two-step")
    assert 8 * two_step.batch_size == 512 and two_step.step1_epochs == 128  # ReActNet


def test_an_unknown_name_is_refused_with_the_closest_and_all_names(capsys):
    with pytest.raises(FileNotFoundError, match=r"Did you mean 'cifar10-resnet20'\?.*vgg-small"):
        load_train_config("cifar10-resnet2")
    assert main(["train", "resnet20_cifar", "--config", "cifar10-resnet2", "-o", "x"]) == 2
    assert "neither a file nor a built-in config" in capsys.readouterr().err


def test_a_distilling_config_cannot_train_from_scratch(cifar10_dir, tmp_path, capsys):
    args = ["train", "resnet20_cifar", "--config", "imagenet-resnet18-two-step", "--data",
            f"cifar10:{cifar10_dir}", "--from-scratch", "-o", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    assert "has no teacher, but the config distils (kd_weight 1.0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _train(arch: str, config: str, data: Path, out: Path, items: int | None = None) -> list[str]:
    """``autobin train`` with the config unchanged, one epoch (of ``items`` images per split)."""
    name = f"cifar10:{data}" + (f"[:{items}]" if items else "")
    return ["train", arch, "--recipe", "adabin-reference", "--config", config, "--data", name,
            "--from-scratch", "--epochs", "1", "-o", str(out)]  # fmt: skip


def _check_run(out: Path, config: str) -> dict:
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    run = json.loads((out / "run.json").read_text())
    schedule = load_train_config(config, epochs=1).to_dict()
    assert {k: run["schedule"][k] for k in schedule if k != "seed"} == {
        k: v for k, v in schedule.items() if k != "seed"
    }
    assert run["arch"] == CIFAR[config] and run["recipe"]["name"] == "adabin-reference"
    assert run["teacher"] is None and not (out / "teacher").exists()
    return run


@pytest.mark.parametrize(
    "config",
    ["cifar10-resnet20",
     pytest.param("cifar10-resnet18", marks=pytest.mark.slow),
     pytest.param("cifar10-vgg-small", marks=pytest.mark.slow)],
)  # fmt: skip
def test_cifar_config_trains_through_the_cli(config, cifar10_dir, tmp_path, capsys):
    out = tmp_path / "run"
    items = None if config == "cifar10-resnet20" else 64  # one batch: the big ones are slow on CPUs
    assert main(_train(CIFAR[config], config, cifar10_dir, out, items)) == 0
    summary = capsys.readouterr().out
    assert "test accuracy (%)" in summary and " - " in summary  # no teacher to report
    _check_run(out, config)
    # the run publishes to the zoo and rebuilds from the registered architecture
    entry = zoo.publish_run(out, f"{CIFAR[config]}.test", zoo_dir=tmp_path / "zoo")
    model = zoo.load(f"{CIFAR[config]}.test", zoo_dir=tmp_path / "zoo")
    assert entry.exists() and any(isinstance(m, AdaBinConv2d) for m in model.modules())
    assert isinstance(model.get_submodule("nonlinear1" if "resnet" in config else "nonlinear0"),
                      Maxout)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
def test_cifar_config_runs_unchanged_under_torchrun(cifar10_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "autobin",
           *_train("resnet20_cifar", "cifar10-resnet20", cifar10_dir, out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.count("test accuracy (%)") == 1  # rank 0 reports
    run = _check_run(out, "cifar10-resnet20")
    assert run["dataset"] == f"cifar10:{cifar10_dir}"


def test_two_step_config_distils_from_a_teacher_of_another_architecture(cifar10_dir, tmp_path):
    # the paper's ResNet-18* recipe: a float teacher of another architecture (ReActNet: a
    # ResNet-34), a student from its own random initialization, binary activations first
    out = tmp_path / "run"
    args = ["train", "resnet20_cifar", "--recipe", "adabin-reference", "--config",
            "imagenet-resnet18-two-step", "--data", f"cifar10:{cifar10_dir}[:64]",
            "--teacher-arch", "resnet10t", "--epochs", "2", "--teacher-epochs", "1",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["phase"] for r in history] == [1, 2]
    run = json.loads((out / "run.json").read_text())
    assert run["arch"] == "resnet20_cifar" and run["teacher"]["arch"] == "resnet10t"
    assert run["schedule"]["two_step"] and run["schedule"]["kd_weight"] == 1.0
    teacher_history = json.loads((out / "teacher" / "metrics.json").read_text())["history"]
    assert len(teacher_history) == 1  # the float resnet10t trained first, for --teacher-epochs
