"""cifar10:PATH / cifar100:PATH: torchvision's classes over the python batches a user holds."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_batches import write_cifar

from autobin.cli import main
from autobin.data import DatasetFilesError, list_datasets, load_dataset
from autobin.data.cifar import CIFAR_MEAN, CIFAR_STD, CifarDataWarning

pytestmark = pytest.mark.filterwarnings("ignore::autobin.data.cifar.CifarDataWarning")


def _raw(folder: Path, name: str) -> dict:
    with (folder / name).open("rb") as fh:
        return pickle.load(fh, encoding="latin1")


def test_cifar10_reads_the_batches_exactly(cifar10_dir: Path) -> None:
    train = load_dataset(f"cifar10:{cifar10_dir}", "train")
    test = load_dataset(f"cifar10:{cifar10_dir}", "test")
    assert (len(train), len(test), train.num_classes) == (300, 100, 10)
    assert train.classes[0] == "airplane"
    raw = _raw(cifar10_dir / "cifar-10-batches-py", "test_batch")
    image, label = test[7]
    assert label == raw["labels"][7] and image.shape == (3, 32, 32)
    # the test transform is ToTensor + Normalize only: pixel values come back exactly
    pixels = raw["data"][7].reshape(3, 32, 32).astype(np.float32) / 255
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]
    torch.testing.assert_close(image * std + mean, torch.from_numpy(pixels), atol=1e-6, rtol=0)


def test_training_split_is_augmented_by_crop_and_flip(cifar10_dir: Path) -> None:
    train = load_dataset(f"cifar10:{cifar10_dir}", "train")
    torch.manual_seed(0)
    views = {tuple(train[3][0].flatten()[:64].tolist()) for _ in range(6)}
    assert len(views) > 1  # random crops / flips differ
    assert train[3][0].shape == (3, 32, 32) and train[3][1] == train.targets[3]


def test_cifar100_slice_and_batches_folder_itself(tmp_path: Path) -> None:
    root = write_cifar(tmp_path, "cifar100", n_train=120, n_test=40)
    full = load_dataset(f"cifar100:{root}", "test")
    part = load_dataset(f"cifar100:{root / 'cifar-100-python'}[:16]", "train")
    assert (len(full), full.num_classes, len(part), part.num_classes) == (40, 100, 16, 100)
    assert full[0][1] == _raw(root / "cifar-100-python", "test")["fine_labels"][0]
    assert "cifar10:PATH" in list_datasets() and "cifar100:PATH" in list_datasets()


def test_subset_files_load_with_a_warning(cifar10_dir: Path) -> None:
    with pytest.warns(CifarDataWarning, match="differ from the official release"):
        load_dataset(f"cifar10:{cifar10_dir}", "test")


def test_missing_folder_and_file_name_the_layout(tmp_path: Path, cifar10_dir: Path) -> None:
    with pytest.raises(DatasetFilesError, match=r"no folder .*cifar-10-batches-py.*data_batch_1"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}", "train")
    (cifar10_dir / "cifar-10-batches-py" / "data_batch_4").unlink()
    for split in ("train", "test"):  # torchvision reads a split only from a complete folder
        with pytest.raises(DatasetFilesError, match="lacks data_batch_4; expected 'cifar10:PATH'"):
            load_dataset(f"cifar10:{cifar10_dir}", split)


@pytest.mark.parametrize("damage", ["truncated", "not_a_batch", "labels"])
def test_damaged_files_are_one_clear_error(cifar10_dir: Path, damage: str) -> None:
    path = cifar10_dir / "cifar-10-batches-py" / "data_batch_2"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "not_a_batch":
        path.write_bytes(pickle.dumps({"pixels": [1, 2, 3]}))
    else:
        batch = _raw(path.parent, "data_batch_2")
        batch["labels"] = batch["labels"][:-1]
        path.write_bytes(pickle.dumps(batch))
    expected = "not a CIFAR python batch" if damage != "labels" else "59 labels for 300 images"
    with pytest.raises(DatasetFilesError, match=expected.replace("59", r"\d+")):
        load_dataset(f"cifar10:{cifar10_dir}", "train")


def test_cli_names_the_layout_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(
        ["train", "resnet20_cifar", "--data", f"cifar10:{tmp_path}", "-o", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cifar-10-batches-py/{data_batch_1, " in err and "test_batch, batches.meta}" in err
