"""The training loop shared by :func:`autobin.train.finetune` and ``train_float``.

Guarantees:

* Determinism: the data order of epoch ``e`` depends only on ``(seed, e)`` (a seeded
  ``torch.Generator`` per epoch); model-side randomness comes from the seeded global generators.
* Exact resume: every epoch ends with an atomic, checksummed ``last.pt`` holding model,
  optimizer, scheduler, gradient scaler, RNG states, counters and metrics. Resuming from it
  replays the remaining epochs exactly as an uninterrupted run would with the same number of
  processes; with another number, see :mod:`autobin.train.sampling` for the data order.
* A non-finite loss stops the run with :class:`NonFiniteLossError` before the bad update; the
  last checkpoint on disk is the last good state.
* Nothing is lost: a directory holding a run is refused unless resuming or overwriting; a
  damaged checkpoint is refused naming the file; ``metrics.json`` is always valid JSON.
* Everything is checked before any work: data form, empty sets, teacher, config, directory.
* Several processes: under ``torchrun`` the process group is initialized here (NCCL on GPUs,
  gloo on CPUs), the student is wrapped in ``DistributedDataParallel``, each rank trains on its
  shard of every epoch's permutation, metrics are summed over ranks, only rank 0 writes files,
  and a failure on one rank stops all of them with a clear message
  (:mod:`autobin.train.distributed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .callbacks import Callback, LoopState
from .config import TrainConfig, TrainConfigError
from .device import resolve_device
from .distributed import Ranks, distributed_session
from .errors import DistributedSetupError, ModelSetupError, NonFiniteLossError
from .evaluation import evaluate
from .outputs import FinetuneResult, prepare_run_dir
from .sampling import DataSource, epoch_generator, epoch_indices
from .schedules import unwrap_model
from .teacher import check_not_shared, frozen_teacher
from .trainer import Trainer

__all__ = [
    "Callback",
    "FinetuneResult",
    "LoopState",
    "NonFiniteLossError",
    "epoch_generator",
    "epoch_indices",
    "evaluate",
    "frozen_teacher",
    "run_training",
]


def run_training(
    model: nn.Module,
    teacher: nn.Module | None,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None,
    config: TrainConfig,
    *,
    kind: str,
    out_dir: str | Path,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    metadata: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Run the shared loop (see the module docstring). Public entry points wrap this.

    Args:
        run_info: written to ``out_dir/run.json`` by rank 0 (``None``: no ``run.json``).
    """
    out = Path(out_dir)
    with distributed_session(config.device) as ranks:
        train = DataSource.of(train_data, "train_data")
        val = DataSource.of(val_data, "val_data") if val_data is not None else None
        config = _adopt_loader_batch_sizes(config, train, val)
        device = resolve_device(config, ranks)
        error = None
        try:
            _check_before_work(model, teacher, train, val, config, ranks, device)
            if ranks.main:
                prepare_run_dir(out, resume=resume, overwrite=overwrite)
        except Exception as exc:  # every rank must reach the agreement
            error = exc
        ranks.agree(error, device, "while checking the run before training")
        check_same_data_on_every_rank([train, val], ranks, device)
        trainer = Trainer(
            model, teacher, train, val, config, kind=kind, out_dir=out, callbacks=callbacks,
            metadata=metadata or {}, run_info=run_info, ranks=ranks, device=device,
        )  # fmt: skip
        return trainer.run(resume)


def check_same_data_on_every_rank(
    sources: list[DataSource | None], ranks: Ranks, device: torch.device
) -> None:
    """Raise on every rank when a data source's length differs between the ranks.

    Every process must pass the same dataset (autobin shards it); different lengths would give
    the ranks different numbers of steps, and the first collective one rank skips aborts the
    run from inside gloo/NCCL.
    """
    for source in sources:
        if source is None or not ranks.active:
            continue
        lengths = [int(n) for n in ranks.gather(float(len(source)), device)]
        if len(set(lengths)) > 1:
            unit = "items" if source.dataset is not None else "batches"
            each = ", ".join(f"rank {r}: {n}" for r, n in enumerate(lengths))
            raise DistributedSetupError(
                f"{source.what} has a different length on each process ({each} {unit}); every "
                "process must pass the same dataset (autobin gives each rank its share): check "
                "that all of them read the same files, split and slice"
            )


def _adopt_loader_batch_sizes(
    config: TrainConfig, train: DataSource, val: DataSource | None
) -> TrainConfig:
    """A user's DataLoader decides the batch size (recorded in the config and checkpoints)."""
    changes: dict[str, Any] = {}
    if train.batch_size is not None and train.batch_size != config.batch_size:
        changes["batch_size"] = train.batch_size
    if val is not None and val.batch_size is not None and config.eval_batch_size is None:
        changes["eval_batch_size"] = val.batch_size
    return config.replace(**changes) if changes else config


HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_models_take_the_data(
    model: nn.Module, teacher: nn.Module | None, train: DataSource
) -> None:
    """Refuse half-precision parameters, and a model that cannot take the first training item.

    Raises:
        ModelSetupError: float16/bfloat16 parameters (autocast, ``precision``, is the way to
            train in half precision), or a forward pass of item 0 fails (wrong input channels).
    """
    for what, net in (("model", model), ("teacher", teacher)):
        if net is None:
            continue
        low = sorted({str(p.dtype) for p in net.parameters() if p.dtype in HALF_DTYPES})
        if low:
            raise ModelSetupError(
                f"the {what} has {', '.join(low)} parameters; pass it in float32 "
                f"({what}.float()): training keeps float32 weights and runs in half precision "
                "through autocast (config precision: 'bf16' or 'fp16')"
            )
    if train.dataset is None:  # a user's DataLoader: its first batch is checked when drawn
        return
    image = train.dataset[0][0]
    for what, net in (("model", model), ("teacher", teacher)):
        if net is not None:
            _try_forward(net, image, what)


def _try_forward(net: nn.Module, image: torch.Tensor, what: str) -> None:
    """One eval-mode forward of ``image`` (as a batch of 1); the net's mode is restored."""
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    was_training = net.training
    try:
        with torch.no_grad():
            nn.Module.train(net, False)
            net(image.unsqueeze(0).to(device))
    except RuntimeError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelSetupError(
            f"train_data item 0 (an image of shape {tuple(image.shape)}) does not fit the "
            f"{what}: {reason}. Check the {what}'s input channels (in_chans) against the data "
            "(grayscale images have 1 channel, RGB 3)"
        ) from None
    finally:
        nn.Module.train(net, was_training)


def _check_before_work(
    model: nn.Module,
    teacher: nn.Module | None,
    train: DataSource,
    val: DataSource | None,
    config: TrainConfig,
    ranks: Ranks,
    device: torch.device,
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model must be an nn.Module, got {type(model).__name__}")
    if teacher is not None:
        check_not_shared(unwrap_model(model), teacher)
    for source in (train, val):
        if source is not None:
            source.check(ranks)
    check_models_take_the_data(unwrap_model(model), teacher, train)
    if config.sync_bn and ranks.active and device.type != "cuda":
        raise TrainConfigError(
            "training config key 'sync_bn': got True, but torch's SyncBatchNorm runs on CUDA "
            f"devices only and this run uses {device.type!r}; set sync_bn: false"
        )
