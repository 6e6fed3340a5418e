"""What the loop feeds the model: datasets or users' DataLoaders, seeded sharding, item checks.

Data order. For a dataset (or a DataLoader over a map-style dataset with the default sampler,
shuffled or not), the loop builds its own loaders: the order of epoch ``e`` is a permutation
that depends only on ``(seed, e)``; with ``W`` processes it is padded by wrapping around to a
multiple of ``W`` and rank ``r`` takes every ``W``-th index starting at ``r``. So a run resumed
with the same number of processes replays exactly; resumed with another number, each epoch
still visits the same permutation, but the batches (which samples are averaged together) differ,
so the result is close to, not equal to, an uninterrupted run. A user's DataLoader keeps its
batch size, collate function, workers and pinning.

A DataLoader with its own sampler or batch sampler, or over an iterable dataset, is iterated as
given, ``sampler.set_epoch(epoch)`` being called each epoch where it exists (e.g.
``DistributedSampler``). Resume is then exact only if that loader's order depends on the epoch
alone (model, optimizer, scheduler and random generators are restored at the epoch boundary
either way). Under several processes such a loader must shard itself (``DistributedSampler``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from .distributed import Ranks
from .errors import DataFormatError

EXPECTED_ITEM = (
    "expected each item to be a pair (image, label): a C x H x W tensor and an int class index "
    "in [0, num_classes)"
)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator whose stream depends only on ``(seed, epoch)``."""
    state = np.random.SeedSequence([seed % 2**32, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def epoch_indices(n: int, seed: int, epoch: int, ranks: Ranks) -> list[int]:
    """This rank's share of the seeded permutation of epoch ``epoch``.

    The permutation is padded (by wrapping around) to a multiple of the world size so every
    rank takes the same number of steps.
    """
    perm = torch.randperm(n, generator=epoch_generator(seed, epoch)).tolist()
    if ranks.world > 1:
        total = math.ceil(n / ranks.world) * ranks.world
        perm = (perm * math.ceil(total / max(n, 1)))[:total]
    return perm[ranks.rank :: ranks.world]


# --------------------------------------------------------------------------- item checks
def check_item(item: Any, index: Any, what: str, shape: torch.Size | None = None) -> None:
    """Raise :class:`DataFormatError` unless ``item`` is ``(C x H x W tensor, int label)``.

    Args:
        item: the dataset item.
        index: its index, quoted in the error.
        what: the dataset's role (``"train_data"``), quoted in the error.
        shape: the image shape every item must share (``None``: not checked).
    """
    where = f"{what} item {index}"
    if isinstance(item, dict):
        raise DataFormatError(
            f"{where} is a dict with keys {sorted(map(str, item))}; {EXPECTED_ITEM}. Wrap the "
            "dataset so that __getitem__ returns (image, label)"
        )
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        got = f"a {type(item).__name__}" + (
            f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
        )
        raise DataFormatError(f"{where} is {got} (no label); {EXPECTED_ITEM}")
    image, label = item[0], item[1]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        got = (
            f"a tensor of shape {tuple(image.shape)}"
            if isinstance(image, torch.Tensor)
            else f"a {type(image).__name__}"
        )
        raise DataFormatError(
            f"{where}: the image is {got}; {EXPECTED_ITEM} (add a transform such as "
            "torchvision.transforms.ToTensor())"
        )
    if shape is not None and image.shape != shape:
        raise DataFormatError(
            f"{where}: image shape {tuple(image.shape)} differs from item 0's {tuple(shape)}; "
            "every image in a batch needs the same size (resize them, e.g. "
            "load_dataset(..., image_size=N) or a Resize transform)"
        )
    is_int_tensor = (
        isinstance(label, torch.Tensor) and label.dim() == 0 and not label.is_floating_point()
    )
    is_int = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
    if not (is_int_tensor or is_int):
        got = (
            f"a tensor of shape {tuple(label.shape)} and dtype {label.dtype}"
            if isinstance(label, torch.Tensor)
            else repr(label)
        )
        raise DataFormatError(f"{where}: the label is {got}; {EXPECTED_ITEM}")


class CheckedItems(Dataset):
    """``data`` with every item checked by :func:`check_item` against item 0's image shape."""

    def __init__(self, data: Dataset, what: str) -> None:
        self.data, self.what = data, what
        first = data[0]
        check_item(first, 0, what)
        self.shape = first[0].shape

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.data[index]
        check_item(item, index, self.what, self.shape)
        return item[0], item[1]


def check_labels(
    y: torch.Tensor, num_classes: int, indices: list[int] | None, what: str, batch: int
) -> None:
    """Raise :class:`DataFormatError` if a label of a batch lies outside ``[0, num_classes)``."""
    bad = (y < 0) | (y >= num_classes)
    if not bool(bad.any()):
        return
    pos = int(bad.nonzero()[0, 0])
    where = f"{what} item {indices[pos]}" if indices is not None else f"{what} batch {batch}"
    raise DataFormatError(
        f"{where} has label {int(y[pos])}, but the model has {num_classes} outputs; labels must "
        f"be class indices in [0, {num_classes}) (set num_classes when creating the model)"
    )


# --------------------------------------------------------------------------- sources
@dataclass
class DataSource:
    """One role's data (train or val): a map-style dataset, or a user's loader used as given.

    Attributes:
        what: ``"train_data"`` or ``"val_data"`` (quoted in errors).
        dataset: the map-style dataset the loop builds loaders from, or ``None``.
        loader: a user's loader iterated as given (``dataset`` is then ``None``).
        batch_size: the user loader's batch size (``None``: the config decides).
        options: DataLoader options taken over from a user's loader.
    """

    what: str
    dataset: Dataset | None = None
    loader: DataLoader | None = None
    batch_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(data: Any, what: str) -> DataSource:
        """Classify ``data`` (a map-style dataset or a DataLoader)."""
        if isinstance(data, DataLoader):
            return DataSource._of_loader(data, what)
        if isinstance(data, IterableDataset) or not (
            hasattr(data, "__getitem__") and hasattr(data, "__len__")
        ):
            raise TypeError(
                f"{what} must be a map-style Dataset of (image, label) pairs, a DataLoader or a "
                f"dataset name, got {type(data).__name__} (wrap an iterable dataset in a "
                "DataLoader)"
            )
        return DataSource(what, dataset=data)

    @staticmethod
    def _of_loader(loader: DataLoader, what: str) -> DataSource:
        default_order = (
            not isinstance(loader.dataset, IterableDataset)
            and type(loader.sampler) in (RandomSampler, SequentialSampler)
            and type(loader.batch_sampler) is BatchSampler
        )
        if not default_order:
            if not hasattr(loader, "__len__") or _len_or_none(loader) is None:
                raise DataFormatError(
                    f"{what}: a DataLoader without a length (an iterable dataset without "
                    "__len__) cannot be scheduled; give the dataset a __len__"
                )
            return DataSource(what, loader=loader, batch_size=loader.batch_size)
        options = {
            "collate_fn": loader.collate_fn,
            "num_workers": loader.num_workers,
            "pin_memory": loader.pin_memory,
            "worker_init_fn": loader.worker_init_fn,
            "persistent_workers": False,
        }
        return DataSource(what, dataset=loader.dataset, batch_size=loader.batch_size,
                          options=options)  # fmt: skip

    def __len__(self) -> int:
        """Number of samples (map-style) or of batches (a loader used as given)."""
        return len(self.dataset if self.dataset is not None else self.loader)  # type: ignore[arg-type]

    def check(self, ranks: Ranks) -> None:
        """Check the first item's form (before any work) and the distributed set-up."""
        if len(self) == 0:
            fix = "pass a non-empty dataset" + (
                ", or val_data=None to train without validation" if self.what == "val_data" else ""
            )
            raise DataFormatError(f"{self.what} is empty (0 items); {fix}")
        if self.dataset is not None:
            self.dataset = CheckedItems(self.dataset, self.what)
        elif ranks.active and not isinstance(self.loader.sampler, DistributedSampler):  # type: ignore[union-attr]
            raise DataFormatError(
                f"{self.what}: under {ranks.world} processes a DataLoader with its own sampler "
                "must shard the data itself (use torch.utils.data.DistributedSampler), or pass "
                "the dataset or a DataLoader with the default sampler and autobin shards it"
            )

    def steps(self, batch_size: int, ranks: Ranks) -> int:
        """Optimizer steps per epoch on each rank."""
        if self.loader is not None:
            return len(self.loader)
        shard = math.ceil(len(self) / ranks.world)
        return shard // batch_size if shard >= batch_size else 1

    def train_batches(
        self, batch_size: int, workers: int, seed: int, epoch: int, ranks: Ranks, pin: bool
    ) -> tuple[Any, list[int] | None]:
        """The epoch's loader and this rank's index order (``None`` for a user's loader)."""
        if self.loader is not None:
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)  # type: ignore[union-attr]
            return self.loader, None
        indices = epoch_indices(len(self), seed, epoch, ranks)
        drop_last = len(indices) >= batch_size
        if drop_last:
            indices = indices[: len(indices) // batch_size * batch_size]
        options = {"num_workers": workers, "pin_memory": pin, **self.options}
        loader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=indices,
            drop_last=drop_last,
            generator=epoch_generator(seed + 1, epoch),  # worker seeds of this epoch
            **options,
        )
        return loader, indices

    def eval_batches(
        self, batch_size: int, workers: int, ranks: Ranks, pin: bool
    ) -> tuple[Any, list[int] | None]:
        """Loader over this rank's share of the data, in order, and its indices."""
        if self.loader is not None:
            return self.loader, None
        indices = list(range(ranks.rank, len(self), ranks.world))
        options = {"num_workers": workers, "pin_memory": pin, **self.options}
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=indices, **options)  # type: ignore[arg-type]
        return loader, indices


def collate_checked(batch: Any, what: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a batch of a user's loader, or a :class:`DataFormatError` naming it."""
    if isinstance(batch, dict) or not isinstance(batch, (tuple, list)) or len(batch) < 2:
        kind = f"a dict with keys {sorted(map(str, batch))}" if isinstance(batch, dict) else (
            f"a {type(batch).__name__}"
        )  # fmt: skip
        raise DataFormatError(
            f"{what} batch {index} is {kind}; expected (images N x C x H x W, labels N)"
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise DataFormatError(
            f"{what} batch {index}: expected (images N x C x H x W tensor, labels N int tensor), "
            f"got ({type(x).__name__}, {type(y).__name__}"
            f"{' of shape ' + str(tuple(y.shape)) if isinstance(y, torch.Tensor) else ''})"
        )
    if y.is_floating_point():
        raise DataFormatError(f"{what} batch {index}: labels are {y.dtype}; {EXPECTED_ITEM}")
    return x, y


def _len_or_none(loader: DataLoader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


__all__ = [
    "EXPECTED_ITEM",
    "CheckedItems",
    "DataSource",
    "check_item",
    "check_labels",
    "collate_checked",
    "epoch_generator",
    "epoch_indices",
]
