"""CIFAR-10 and CIFAR-100 from the user's disk, through torchvision's dataset classes.

``cifar10:PATH`` / ``cifar100:PATH`` read the standard python batches (what
``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpack to) with
``torchvision.datasets.CIFAR10`` / ``CIFAR100`` and never download. PATH is the folder that
holds ``cifar-10-batches-py/`` (``cifar-100-python/``), or that folder itself.

Checks, each failure one :class:`DatasetFilesError` line naming the expected layout: every file
of the split and the meta file exist; each unpickles to the batch format (``data``: N x 3072
uint8 rows, a label per row, labels within the class list). Files that differ from the official
release (torchvision's md5 sums) load with a warning, so that subsets written in the same
format (tests, a user's own split) work while a damaged official file does not pass unnoticed.

Transforms are the released AdaBin CIFAR code's: training images are flipped at random and
cropped to 32x32 from a 4-pixel zero-padded image; every image is normalized with ImageNet's
mean and std, the statistics the released code (and so its checkpoints) uses.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AutobinError, AutobinWarning

#: Normalization of the released AdaBin CIFAR code (ImageNet's statistics).
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)
CIFAR_SIZE = 32


class DatasetFilesError(AutobinError, OSError):
    """A dataset folder is missing, incomplete or holds damaged files."""


class CifarDataWarning(AutobinWarning):
    """CIFAR files that are readable but differ from the official release."""


def _torchvision_class(variant: str) -> type:
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[variant]


def _layout(variant: str) -> str:
    cls = _torchvision_class(variant)
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return (
        f"expected '{variant}:PATH' with PATH/{cls.base_folder}/{{{', '.join(files)}}} (what "
        f"{cls.filename} unpacks to; PATH may also be the {cls.base_folder} folder itself)"
    )


def _root(variant: str, path: str) -> Path:
    """The torchvision ``root`` for ``path`` (the parent of the batches folder)."""
    base_folder = _torchvision_class(variant).base_folder
    folder = Path(os.path.expanduser(path))
    if folder.name == base_folder and folder.is_dir():
        return folder.parent
    if not path or not (folder / base_folder).is_dir():
        raise DatasetFilesError(
            f"{variant}: no folder {str(folder / base_folder)!r}; " + _layout(variant)
        )
    return folder


def _check_files(variant: str, root: Path, split: str) -> None:
    """Every file of the release exists (torchvision reads none without all); warn where the
    files of ``split`` or the meta file are not the official ones."""
    from torchvision.datasets.utils import check_integrity

    cls = _torchvision_class(variant)
    listed = cls.train_list if split == "train" else cls.test_list
    files = [*listed, [cls.meta["filename"], cls.meta["md5"]]]
    folder = root / cls.base_folder
    every = [*cls.train_list, *cls.test_list, [cls.meta["filename"], None]]
    missing = [name for name, _ in every if not (folder / name).is_file()]
    if missing:
        raise DatasetFilesError(
            f"{variant}: {folder} lacks {', '.join(missing)}; " + _layout(variant)
        )
    differ = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
    if differ:
        warnings.warn(
            f"{variant}: {', '.join(differ)} in {folder} differ from the official release "
            "(md5); loading them as given. Unpack the official archive again if these should "
            "be the original files",
            CifarDataWarning,
            stacklevel=4,
        )


def _unchecked(cls: type) -> type:
    """``cls`` without torchvision's md5 comparison (done by :func:`_check_files` instead)."""
    return type(
        f"Local{cls.__name__}",
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


def _transform(split: str, size: tuple[int, int] | None) -> Any:
    from torchvision import transforms

    steps = []
    if split == "train":
        steps += [transforms.RandomHorizontalFlip(), transforms.RandomCrop(CIFAR_SIZE, padding=4)]
    if size is not None and size != (CIFAR_SIZE, CIFAR_SIZE):
        steps.append(transforms.Resize(size))
    steps += [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    return transforms.Compose(steps)


def load_cifar(
    variant: str, path: str, split: str, size: tuple[int, int] | None, in_chans: int | None
) -> Any:
    """``torchvision.datasets.CIFAR10/100`` over ``path`` with the released code's transforms.

    Returns the torchvision dataset with ``num_classes`` and ``name`` (``"cifar10:PATH"``) set.

    Raises:
        DatasetFilesError: missing folder or file, or a file that is not a CIFAR python batch.
        ValueError: ``in_chans=1`` (CIFAR images are RGB).
    """
    if in_chans not in (None, 3):
        raise ValueError(f"{variant}: CIFAR images are RGB; use in_chans=3, got {in_chans}")
    root = _root(variant, path)
    _check_files(variant, root, split)
    cls = _unchecked(_torchvision_class(variant))
    try:
        dataset = cls(str(root), train=split == "train", transform=_transform(split, size))
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, MemoryError) as exc:  # fmt: skip
        raise DatasetFilesError(
            f"{variant}: {root / cls.base_folder} holds a file that is not a CIFAR python batch "
            f"({type(exc).__name__}: {str(exc)[:120]}); {_layout(variant)}"
        ) from None
    _check_contents(variant, dataset, root / cls.base_folder)
    dataset.num_classes = len(dataset.classes)
    dataset.name = f"{variant}:{path}"  # what run.json records as the data
    return dataset


def _check_contents(variant: str, dataset: Any, folder: Path) -> None:
    expected = 10 if variant == "cifar10" else 100
    labels = dataset.targets
    problem = None
    if len(dataset.classes) != expected:
        problem = f"the meta file names {len(dataset.classes)} classes, not {expected}"
    elif len(labels) != len(dataset.data):
        problem = f"{len(labels)} labels for {len(dataset.data)} images"
    elif len(labels) == 0:
        problem = "the split holds no images"
    elif (
        np.asarray(labels).dtype.kind not in "iu" or not 0 <= min(labels) <= max(labels) < expected
    ):
        problem = f"labels that are not integers in 0..{expected - 1}"
    if problem:
        raise DatasetFilesError(f"{variant}: {folder}: {problem}; {_layout(variant)}")


__all__ = [
    "CIFAR_MEAN",
    "CIFAR_SIZE",
    "CIFAR_STD",
    "CifarDataWarning",
    "DatasetFilesError",
    "load_cifar",
]
