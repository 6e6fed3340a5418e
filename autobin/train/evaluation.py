"""Evaluation of a classifier: top-1 accuracy and cross-entropy over held-out data.

:func:`eval_sums` walks one process's batches and returns plain sums, which the loop adds up
over ranks (:meth:`autobin.train.trainer.Trainer.evaluate`); :func:`evaluate` is the public,
single-process entry point.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .device import autocast, to_input
from .distributed import Ranks
from .sampling import DataSource, check_labels, collate_checked


@torch.no_grad()
def eval_sums(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
    channels_last: bool = False,
    indices: list[int] | None = None,
) -> list[float]:
    """``[sum of cross-entropy, correct top-1, count]`` of ``model`` over ``loader``."""
    from tqdm.auto import tqdm

    loss_sum = correct = n = 0.0
    bar = tqdm(loader, desc="eval", disable=not progress, leave=False, dynamic_ncols=True)
    for index, batch in enumerate(bar):
        x, y = collate_checked(batch, "val_data", index)
        x, y = to_input(x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(x)
        rows = indices[int(n) : int(n) + len(y)] if indices is not None else None
        check_labels(y, logits.shape[-1], rows, "val_data", index)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += float((logits.argmax(-1) == y).sum())
        n += y.shape[0]
    return [loss_sum, correct, n]


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``data`` (fp32, eval mode).

    The model's train/eval mode is restored afterwards.

    Args:
        model: a classifier returning ``(N, num_classes)`` logits.
        data: a dataset of ``(image, label)`` pairs, or a DataLoader of such batches.
        batch_size: evaluation batch size (a DataLoader keeps its own).
        device: where to run; ``None`` uses the device of the model's first parameter.
        num_workers: DataLoader workers.
        progress: show a progress bar.

    Returns:
        ``{"acc": top-1 percent, "loss": mean cross-entropy, "n": sample count}``.

    Raises:
        DataFormatError: the data is empty or an item has the wrong form.
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    source = DataSource.of(data, "data")
    source.check(Ranks())
    if source.batch_size is None:
        source.batch_size = batch_size
    loader, indices = source.eval_batches(source.batch_size, num_workers, Ranks(), False)
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct, n = eval_sums(model, loader, device, None, progress, False, indices)
    finally:
        model.train(was_training)
    return {"acc": 100.0 * correct / max(n, 1.0), "loss": loss_sum / max(n, 1.0), "n": n}
