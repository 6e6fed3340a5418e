"""CIFAR data in the exact python-batch format of the official release, written by tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]  # fmt: skip


def _batch(images: np.ndarray, labels: np.ndarray, label_key: str, title: str) -> dict:
    """One batch as the CIFAR python release stores it: rows of 3072 uint8 values (the 1024 red,
    then green, then blue pixels of a 32x32 image, row-major), a label per row, file names."""
    return {
        "batch_label": title,
        label_key: [int(y) for y in labels],
        "data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072)),
        "filenames": [f"img_{i:05d}.png" for i in range(len(images))],
    }


def _images(rng: np.random.Generator, labels: np.ndarray, classes: int) -> np.ndarray:
    """HWC uint8 images whose mean colour depends on the label (learnable), plus noise."""
    palette = rng.integers(40, 216, size=(classes, 3))
    noise = rng.normal(0, 30, size=(len(labels), 32, 32, 3))
    return np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)  # the release's pickles are protocol 2


def write_cifar(root: Path, variant: str = "cifar10", n_train: int = 300, n_test: int = 100,
                seed: int = 0) -> Path:  # fmt: skip
    """Write ``n_train`` / ``n_test`` images in the layout of the official archive; returns
    ``root`` (the folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/``)."""
    rng = np.random.default_rng(seed)
    classes = 10 if variant == "cifar10" else 100
    labels = rng.integers(0, classes, size=n_train + n_test)
    images = _images(rng, labels, classes)
    train = (images[:n_train], labels[:n_train])
    test = (images[n_train:], labels[n_train:])
    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i, part in enumerate(np.array_split(np.arange(n_train), 5)):
            batch = _batch(train[0][part], train[1][part], "labels", f"training batch {i + 1} of 5")
            _dump(folder / f"data_batch_{i + 1}", batch)
        _dump(folder / "test_batch", _batch(*test, "labels", "testing batch 1 of 1"))
        meta = {"num_cases_per_batch": 10000, "label_names": CIFAR10_NAMES, "num_vis": 3072}
        _dump(folder / "batches.meta", meta)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, (x, y) in (("train", train), ("test", test)):
            batch = _batch(x, y, "fine_labels", name)
            batch["coarse_labels"] = [int(v) // 5 for v in y]
            _dump(folder / name, batch)
        meta = {"fine_label_names": [f"class{i}" for i in range(100)],
                "coarse_label_names": [f"super{i}" for i in range(20)]}  # fmt: skip
        _dump(folder / "meta", meta)
    return root
