"""Built-in datasets: sizes, fixed splits, shapes; name and path errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autobin.data import DatasetNotFoundError, list_datasets, load_dataset
from autobin.data.datasets import _seeded_split


def test_mnist5k_sizes_and_items() -> None:
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    assert train.num_classes == 10
    # Normalized with MNIST statistics: roughly zero mean, unit std.
    assert abs(float(train.images.mean())) < 0.05
    assert abs(float(train.images.std()) - 1.0) < 0.05


def test_mnist5k_split_is_fixed_and_disjoint() -> None:
    a, b = load_dataset("mnist5k", "test"), load_dataset("mnist5k", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # Pinned: a change of the split seed or parsing would change every reported number.
    counts = np.bincount(a.labels.numpy(), minlength=10).tolist()
    assert counts == [104, 100, 98, 94, 115, 81, 104, 89, 108, 107]
    train_idx, test_idx = _seeded_split(5000, 1000, "train"), _seeded_split(5000, 1000, "test")
    assert len(set(train_idx) | set(test_idx)) == 5000
    assert not set(train_idx) & set(test_idx)


def test_digits_and_resize_channels() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    big = load_dataset("digits", "train", image_size=16, in_chans=3)
    image, _ = big[3]
    assert image.shape == (3, 16, 16)
    assert torch.equal(image[0], image[2])


def test_unknown_name_lists_available() -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar11", "train")
    message = str(info.value)
    for name in ("mnist5k", "digits", "imagefolder:PATH", "cifar10:PATH", "cifar100:PATH"):
        assert name in message
    assert list_datasets() == [
        "digits", "mnist5k", "imagefolder:PATH", "cifar10:PATH", "cifar100:PATH"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")  # type: ignore[arg-type]


def test_imagefolder_missing_path_and_tiny_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}", "train")
    with pytest.raises(FileNotFoundError, match="no 'test' split"):
        (tmp_path / "train").mkdir()
        load_dataset(f"imagefolder:{tmp_path}", "test")
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.new("RGB", (20, 20), (i * 50, 80, 160)).save(folder / f"{i}.png")
    data = load_dataset(f"imagefolder:{tmp_path}", "test", image_size=16)
    image, label = data[0]
    assert image.shape == (3, 16, 16) and label in (0, 1)
    assert data.classes == ["cat", "dog"]
    gray = load_dataset(f"imagefolder:{tmp_path}", "train", image_size=16, in_chans=1)
    assert gray[0][0].shape == (1, 16, 16)
    # the paper's ImageNet augmentation: random-resized crop and flip, no colour jitter
    steps = [type(t).__name__ for t in gray.transform.transforms]
    assert steps[:2] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip"]
    assert "ColorJitter" not in steps


def test_slice_of_a_builtin_takes_the_first_items_of_each_split() -> None:
    full, part = load_dataset("digits", "train"), load_dataset("digits[:100]", "train")
    assert len(part) == 100 and part.name == "digits[:100]"
    assert torch.equal(part[99][0], full[99][0]) and part[99][1] == full[99][1]
    middle = load_dataset("digits[10:20]", "test")
    assert len(middle) == 10 and torch.equal(middle[0][0], load_dataset("digits", "test")[10][0])
    for bad in ("digits[a:]", "digits[5:5]"):
        with pytest.raises(ValueError, match="slice"):
            load_dataset(bad, "train")
