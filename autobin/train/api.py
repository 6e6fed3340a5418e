"""Public entry points: :func:`finetune` (binary student, float teacher) and :func:`train_float`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..model_info import float_model_of, info
from .callbacks import Callback
from .config import TrainConfig, load_train_config
from .loop import run_training
from .outputs import FinetuneResult, describe_run
from .schedules import unwrap_model

Data = Dataset | DataLoader | str


def finetune(
    student: nn.Module,
    teacher: nn.Module | None = None,
    train_data: Data | None = None,
    val_data: Data | None = None,
    *,
    epochs: int | None = None,
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
    out_dir: str | Path = "runs/finetune",
    resume: bool | str | Path = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> FinetuneResult:
    """Train a binary student by distillation from its float teacher.

    The default objective is ReActNet's: the KL divergence between the teacher's and the
    student's softmax (``kd_weight=1``); cross-entropy on labels (``ce_weight``) and feature
    distillation at named blocks (``feature_weight``, ``feature_layers``) can be added. The
    teacher is frozen (``requires_grad=False``) and kept in eval mode for the whole run.

    Outputs in ``out_dir``: ``last.pt`` (every epoch, atomic, checksummed), ``best.pt`` (best
    val accuracy; the latest epoch without val data), ``metrics.json``, ``run.json`` (what
    ``autobin zoo publish OUT_DIR NAME`` needs: architecture, arguments, input size, recipe,
    data, teacher, schedule), ``curves.png`` and ``binary_sets.png``. The student is trained in
    place and ends in its final (not best) state.

    Under ``torchrun`` the run is distributed over its processes (DistributedDataParallel, NCCL
    on GPUs, gloo on CPUs; see :mod:`autobin.train.distributed`); the same call works in one
    process without torchrun.

    Data. A dataset yields ``(image, label)`` pairs. A ``DataLoader`` is accepted too: over a
    map-style dataset with the default sampler (``shuffle=True`` or ``False``) the loop keeps
    its batch size, collate function, workers and pinning but draws the order itself (seeded
    per epoch, sharded per process), so ``resume=True`` continues exactly as an uninterrupted
    run. A DataLoader with its own sampler or over an iterable dataset is used as given
    (``set_epoch`` is called each epoch where the sampler has it); resume then restores
    model, optimizer, scheduler and random generators at the epoch boundary, and is exact only
    if that loader's order depends on the epoch alone (see :mod:`autobin.train.sampling`).

    Args:
        student: the binary model, e.g. from :func:`autobin.binarize` (may be wrapped in
            ``DistributedDataParallel``).
        teacher: the float model; ``None`` uses the float model :func:`autobin.binarize`
            attached to the student.
        train_data: training dataset yielding ``(image, label)``, a DataLoader of such
            batches, or a dataset name for :func:`autobin.data.load_dataset` (its ``"train"``
            split).
        val_data: validation dataset, DataLoader or name; ``None`` with a named
            ``train_data`` uses that dataset's ``"test"`` split, otherwise no validation.
        epochs: number of epochs (overrides the config's).
        config: a :class:`TrainConfig`, a mapping or a YAML file path.
        out_dir: output directory.
        resume: ``True`` to continue from ``out_dir/last.pt`` (a fresh run if absent), or a
            checkpoint path.
        overwrite: start a new run in an ``out_dir`` that holds one, deleting its files.
            Without it (and without ``resume``) such a directory is refused.
        callbacks: objects with any of ``on_epoch_start``, ``on_step_end``, ``on_epoch_end``.
        **overrides: any :class:`TrainConfig` field, e.g. ``lr=5e-4, two_step=True``.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        ValueError: no teacher is available for a distillation loss, or a bad config
            (:class:`~autobin.train.config.TrainConfigError`).
        DataFormatError: empty data or an item of the wrong form (names the item).
        RunDirectoryError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        CheckpointError: the checkpoint to resume from is damaged.
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
        RankFailedError: another process of a distributed run failed.
    """
    cfg = load_train_config(config, epochs=epochs, **overrides)
    train_set, val_set = _resolve_data(train_data, val_data)
    if cfg.kd_weight > 0 or cfg.feature_weight > 0:
        teacher = _resolve_teacher(student, teacher)
    net = unwrap_model(student)
    metadata = {
        "student": type(net).__name__,
        "teacher": _describe(teacher),
        "report": _plain(info(net).report if info(net) is not None else None),
    }
    return run_training(
        student,
        teacher,
        train_set,
        val_set,
        cfg,
        kind="finetune",
        out_dir=out_dir,
        resume=resume,
        overwrite=overwrite,
        callbacks=callbacks,
        metadata=metadata,
        run_info=describe_run(net, teacher, train_data, cfg.to_dict()),
    )


def train_float(
    model: nn.Module,
    train_data: Data,
    val_data: Data | None = None,
    *,
    epochs: int | None = None,
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
    out_dir: str | Path = "runs/float",
    resume: bool | str | Path = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> FinetuneResult:
    """Train a float model with cross-entropy (e.g. the teacher of a demo); same loop as
    :func:`finetune`, same outputs, resume and failure behaviour.

    Args:
        model: the model to train in place.
        train_data: training dataset or dataset name (see :func:`finetune`).
        val_data: validation dataset or name (see :func:`finetune`).
        epochs: number of epochs (overrides the config's).
        config: a :class:`TrainConfig`, a mapping or a YAML file path. Its distillation weights
            must be 0 (there is no teacher); a mapping (or no config) defaults to
            ``ce_weight=1, kd_weight=0``.
        out_dir: output directory.
        resume: see :func:`finetune`.
        overwrite: see :func:`finetune`.
        callbacks: see :func:`finetune`.
        **overrides: any :class:`TrainConfig` field.

    Returns:
        A :class:`FinetuneResult`.
    """
    float_objective = {"kd_weight": 0.0, "ce_weight": 1.0}
    if config is None:
        config = float_objective
    elif isinstance(config, Mapping):  # a partial mapping trains with cross-entropy by default
        config = {**float_objective, **config}
    cfg = load_train_config(config, epochs=epochs, **overrides)
    if cfg.kd_weight > 0 or cfg.feature_weight > 0:
        raise ValueError(
            f"train_float has no teacher, but the config sets kd_weight={cfg.kd_weight} and "
            f"feature_weight={cfg.feature_weight}; set both to 0 and ce_weight > 0"
        )
    train_set, val_set = _resolve_data(train_data, val_data)
    metadata = {"student": type(unwrap_model(model)).__name__, "teacher": None, "report": None}
    return run_training(
        model,
        None,
        train_set,
        val_set,
        cfg,
        kind="float",
        out_dir=out_dir,
        resume=resume,
        overwrite=overwrite,
        callbacks=callbacks,
        metadata=metadata,
    )


def _resolve_teacher(student: nn.Module, teacher: nn.Module | None) -> nn.Module:
    if teacher is not None:
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
        return teacher
    found = float_model_of(unwrap_model(student))
    if found is None:
        raise ValueError(
            "no teacher: the student has no attached float model (autobin.info(student)"
            ".float_model, set by autobin.binarize). Pass the float model explicitly: "
            "finetune(student, teacher=float_model, ...), or train without distillation "
            "(kd_weight=0, feature_weight=0, ce_weight=1)"
        )
    return found


def _resolve_data(
    train_data: Data | None, val_data: Data | None
) -> tuple[Dataset | DataLoader, Dataset | DataLoader | None]:
    from ..data import load_dataset

    if train_data is None:
        raise ValueError(
            "train_data is required (a Dataset, a DataLoader or a name such as 'mnist5k')"
        )
    if isinstance(val_data, str):
        val_data = load_dataset(val_data, "test")
    if isinstance(train_data, str):
        if val_data is None:
            val_data = load_dataset(train_data, "test")
        train_data = load_dataset(train_data, "train")
    return train_data, val_data


def _describe(model: nn.Module | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _plain(obj: Any, depth: int = 0) -> Any:
    """Checkpoint-safe plain data (dicts, lists, str, numbers, bools, None) from ``obj``."""
    if depth > 8:
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _plain(obj.to_dict(), depth + 1)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), depth + 1)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    return str(obj)
