"""What a user gets wrong, and what the loop does about it: clear errors, nothing lost."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_nets import tiny_float_net, tiny_student
from torch.utils.data import Dataset, Subset

from autobin import AutobinError
from autobin.data import load_dataset
from autobin.train import (
    CheckpointError,
    DataFormatError,
    DistributedSetupError,
    ModelSetupError,
    RunDirectoryError,
    TrainWarning,
    finetune,
    load_checkpoint,
    train_float,
)

FAST = {"progress": False, "plots": False, "batch_size": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def digits() -> tuple[Subset, Subset]:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    return Subset(train, range(128)), Subset(test, range(64))


# --------------------------------------------------------------------------- run directory
def test_existing_run_is_refused_then_resumed_or_overwritten(digits, tmp_path: Path) -> None:
    train, val = digits
    finetune(
        tiny_student(tiny_float_net()),
        tiny_float_net(),
        train,
        val,
        epochs=1,
        out_dir=tmp_path,
        **FAST,
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(RunDirectoryError, match=r"already holds a run.*resume=True.*overwrite"):
        teacher = tiny_float_net()
        finetune(tiny_student(teacher), teacher, train, val, epochs=2, out_dir=tmp_path, **FAST)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    # two epochs instead of one: the schedule differs from a run planned with two (said so)
    with pytest.warns(TrainWarning, match=r"different training config \(\['epochs'\]\)"):
        result = finetune(tiny_student(tiny_float_net()), tiny_float_net(), train, val, epochs=2,
                          out_dir=tmp_path, resume=True, **FAST)  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2]
    (tmp_path / "curves.png").write_bytes(b"stale figure of the old run")
    fresh = finetune(tiny_student(tiny_float_net()), tiny_float_net(), train, None, epochs=1,
                     out_dir=tmp_path, overwrite=True, **FAST)  # fmt: skip
    assert len(fresh.history) == 1 and not (tmp_path / "curves.png").exists()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    # without validation data best.pt is the latest epoch, so the run can be published
    assert fresh.best_checkpoint == tmp_path / "best.pt"


def test_out_dir_that_is_a_file_is_refused(digits, tmp_path: Path) -> None:
    train, _ = digits
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(RunDirectoryError, match="is a file"):
        train_float(tiny_float_net(), train, epochs=1, out_dir=path, **FAST)
    assert path.read_text() == "not a directory"


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    train_float(tiny_float_net(), digits[0], epochs=1, out_dir=out, **FAST)
    return out / "last.pt"


@pytest.mark.parametrize("damage", ["empty", "truncated", "half"])
def test_damaged_checkpoint_is_refused_naming_the_file(checkpoint, tmp_path, damage) -> None:
    data = checkpoint.read_bytes()
    bad = tmp_path / "last.pt"
    cut = {"empty": 0, "truncated": len(data) - 100, "half": len(data) // 2}[damage]
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)


def test_a_flipped_byte_is_refused_or_harmless(checkpoint, tmp_path) -> None:
    """At any position: refused naming the file, or (padding bytes) the state loads unchanged."""
    data = checkpoint.read_bytes()
    good = load_checkpoint(checkpoint)
    bad = tmp_path / "last.pt"
    refused = 0
    positions = range(0, len(data), max(1, len(data) // 97))
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0x20
        bad.write_bytes(bytes(flipped))
        try:
            state = load_checkpoint(bad)
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            refused += 1
            continue
        for key, value in good["model"].items():
            assert torch.equal(state["model"][key], value), (pos, key)
        assert state["history"] == good["history"], pos
    assert refused >= len(positions) * 0.8  # nearly every byte carries data


def test_resume_from_a_damaged_last_pt_is_refused(digits, tmp_path: Path) -> None:
    train, _ = digits
    train_float(tiny_float_net(), train, epochs=1, out_dir=tmp_path, **FAST)
    last = tmp_path / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x01
    last.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last\.pt.*does not match its checksum"):
        train_float(tiny_float_net(), train, epochs=2, out_dir=tmp_path, resume=True, **FAST)


# --------------------------------------------------------------------------- data
class _Items(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _good(n: int = 32, size: int = 8) -> list:  # one full batch of 32: every item used
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(1, size, size, generator=g), i % 10) for i in range(n)]


@pytest.mark.parametrize(
    ("bad_item", "message"),
    [
        (torch.zeros(1, 8, 8), "train_data item 5 is a Tensor \\(no label\\).*expected each item"),
        ({"image": torch.zeros(1, 8, 8), "label": 1}, "train_data item 5 is a dict with keys"),
        ((torch.zeros(1, 8, 8), 10), "train_data item 5 has label 10, but the model has 10 "),
        ((torch.zeros(1, 9, 9), 3), "train_data item 5: image shape \\(1, 9, 9\\) differs"),
        ((torch.zeros(1, 8, 8), 2.0), "train_data item 5: the label is 2.0"),
        (([[0.0]], 1), "train_data item 5: the image is a list"),
    ],
    ids=["no-label", "dict", "label-out-of-range", "mixed-sizes", "float-label", "not-tensor"],
)
def test_wrong_item_form_names_the_item(tmp_path, bad_item, message) -> None:
    items = _good()
    items[5] = bad_item
    with pytest.raises(DataFormatError, match=message):
        train_float(tiny_float_net(), _Items(items), epochs=1, out_dir=tmp_path, **FAST)


def test_wrong_first_item_is_refused_before_any_work(tmp_path) -> None:
    items = _good()
    items[0] = {"x": torch.zeros(1, 8, 8)}
    with pytest.raises(DataFormatError, match="val_data item 0 is a dict"):
        train_float(tiny_float_net(), _Items(_good()), _Items(items), epochs=1, out_dir=tmp_path,
                    **FAST)  # fmt: skip
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_empty_validation_set_is_an_error(tmp_path) -> None:
    with pytest.raises(DataFormatError, match=r"val_data is empty.*val_data=None"):
        train_float(
            tiny_float_net(), _Items(_good()), _Items([]), epochs=1, out_dir=tmp_path, **FAST
        )


def test_nan_validation_loss_writes_valid_json(tmp_path) -> None:
    val = _good(20)
    val[3] = (torch.full((1, 8, 8), float("nan")), 3)
    with pytest.warns(TrainWarning, match=r"epoch 1: the validation loss is nan: .*check the data"):
        result = train_float(tiny_float_net(), _Items(_good()), _Items(val), epochs=1,
                             out_dir=tmp_path, **FAST)  # fmt: skip
    assert math.isnan(result.history[0]["val_loss"])

    def refuse(constant: str):
        raise AssertionError(f"invalid JSON constant {constant}")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["history"][0]["val_loss"] is None


# --------------------------------------------------------------------------- progress
def test_progress_without_a_terminal_is_one_line_per_epoch(digits, tmp_path, capsys) -> None:
    train, val = digits
    train_float(
        tiny_float_net(), train, val, epochs=2, out_dir=tmp_path, **{**FAST, "progress": True}
    )
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    lines = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]


# --------------------------------------------------------------------------- torchrun
def test_a_malformed_torchrun_environment_is_one_clear_error(monkeypatch, tmp_path) -> None:
    env = {"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29500"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedSetupError, match=r"malformed \(WORLD_SIZE='two', .*launch "):
        train_float(tiny_float_net(), _Items(_good()), epochs=1, out_dir=tmp_path, **FAST)
    assert issubclass(DistributedSetupError, AutobinError) and not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- models
def _rgb_net() -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(8, 10))


@pytest.mark.parametrize("which", ["model", "teacher"])
def test_data_with_other_channels_than_the_model_is_one_clear_error(tmp_path, which) -> None:
    student, teacher = tiny_student(tiny_float_net()), tiny_float_net()
    if which == "model":
        student = _rgb_net()
    else:
        teacher = _rgb_net()
    with pytest.raises(ModelSetupError, match=rf"item 0 \(an image of shape \(1, 8, 8\)\) does "
                       rf"not fit the {which}: .*3 channels.*in_chans"):  # fmt: skip
        finetune(student, teacher, _Items(_good()), epochs=1, out_dir=tmp_path, **FAST)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("which", ["model", "teacher"])
def test_half_precision_weights_are_refused_pointing_to_autocast(tmp_path, which, dtype) -> None:
    teacher = tiny_float_net()
    student = tiny_student(teacher)
    (student if which == "model" else teacher).to(dtype)
    with pytest.raises(ModelSetupError, match=rf"the {which} has {dtype} parameters; pass it in "
                       rf"float32 \({which}.float\(\)\).*precision"):  # fmt: skip
        finetune(student, teacher, _Items(_good()), epochs=1, out_dir=tmp_path, **FAST)
