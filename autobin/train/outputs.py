"""What a run writes: its directory, ``metrics.json``, ``run.json`` and progress on the console.

(What its checkpoints ``last.pt`` and ``best.pt`` hold is :mod:`autobin.train.checkpoint`.)

Only rank 0 writes, always atomically (:mod:`autobin.atomic`). A directory that already holds a
run is never overwritten by accident: :func:`prepare_run_dir` refuses unless the caller resumes
or asks to overwrite.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..atomic import write_json
from ..model_info import info
from ..timm_metadata import timm_architecture
from .errors import RunDirectoryError

if TYPE_CHECKING:
    from .config import TrainConfig

LAST, BEST, METRICS, RUN = "last.pt", "best.pt", "metrics.json", "run.json"
#: Files a run writes into its directory (removed by ``overwrite=True`` before a new run).
RUN_FILES = (LAST, BEST, METRICS, RUN, "curves.png", "binary_sets.png")


@dataclass
class FinetuneResult:
    """Outcome of a training run.

    Attributes:
        best_val_acc: best top-1 validation accuracy in percent (``None`` without val data).
        best_epoch: 1-based epoch of ``best_val_acc``.
        final_val_acc: top-1 validation accuracy after the last epoch.
        history: one record per epoch (losses, accuracies, lr, throughput, phase).
        out_dir: output directory.
        last_checkpoint: path of ``last.pt``.
        best_checkpoint: path of ``best.pt`` (the latest epoch without val data).
        metrics_path: path of ``metrics.json``.
        plots: written figures by name (``"curves"``, ``"binary_sets"``).
    """

    best_val_acc: float | None
    best_epoch: int | None
    final_val_acc: float | None
    history: list[dict[str, Any]]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics_path: Path
    plots: dict[str, Path] = field(default_factory=dict)


def prepare_run_dir(out_dir: Path, *, resume: bool | str | Path, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one; with ``overwrite``, remove its files.

    Raises:
        RunDirectoryError: ``out_dir`` holds a run (``last.pt``, ``best.pt`` or
            ``metrics.json``), ``resume`` is false and ``overwrite`` is not set; or ``out_dir``
            is a file.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirectoryError(f"out_dir {str(out_dir)!r} is a file; give a directory path")
    if resume is not False and resume is not None:
        return
    found = [name for name in (LAST, BEST, METRICS) if (out_dir / name).is_file()]
    if not found:
        return
    if not overwrite:
        raise RunDirectoryError(
            f"out_dir {str(out_dir)!r} already holds a run ({', '.join(found)}); nothing was "
            "changed. Continue it with resume=True (CLI: --resume), replace it with "
            "overwrite=True (CLI: --overwrite), or choose another out_dir"
        )
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_strict_json(path: Path, data: Any) -> Path:
    """Atomically write ``data`` as valid JSON (non-finite numbers become ``null``)."""
    return write_json(path, json_safe(data))


def metrics_doc(
    *,
    kind: str,
    history: list[dict[str, Any]],
    best_val_acc: float | None,
    best_epoch: int | None,
    world_size: int,
    config: TrainConfig,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """``metrics.json`` content: the per-epoch history, best and final accuracy, the config."""
    final = history[-1].get("val_acc") if history else None
    return {
        "kind": kind,
        "epochs_done": len(history),
        "best_val_acc": best_val_acc,
        "best_epoch": best_epoch,
        "final_val_acc": final,
        "world_size": world_size,
        "history": history,
        "config": config.to_dict(),
        **metadata,
    }


def describe_run(
    student: nn.Module, teacher: nn.Module | None, dataset: Any, schedule: Mapping[str, Any]
) -> dict[str, Any]:
    """``run.json`` content: what ``autobin zoo publish RUN_DIR NAME`` needs to rebuild the model.

    ``arch`` (the timm name), ``arch_kwargs`` (``num_classes``, ``in_chans``), ``input_size``
    (``C, H, W`` the student was binarized for), ``recipe``, ``dataset``, ``teacher`` and
    ``schedule``, read from the student's :func:`autobin.info` record. A student that is not a
    timm model has ``arch: null`` (the zoo then says so).
    """
    record = info(student)
    architecture = record.architecture if record is not None else None
    timm_arch = architecture if architecture and architecture.get("library") == "timm" else None
    shape = getattr(record.report, "input_shape", None) if record is not None else None
    input_size = [int(d) for d in shape] if shape is not None and len(shape) == 3 else None
    return {
        "arch": timm_arch["name"] if timm_arch else None,
        "arch_kwargs": dict(timm_arch["kwargs"]) if timm_arch else {},
        "input_size": input_size,
        "recipe": record.recipe.to_dict() if record is not None and record.recipe else None,
        "dataset": _dataset_name(dataset),
        "teacher": _describe_teacher(teacher),
        "schedule": dict(schedule),
    }


def _describe_teacher(teacher: nn.Module | None) -> dict[str, Any] | None:
    if teacher is None:
        return None
    return {
        "arch": timm_architecture(teacher),
        "class": type(teacher).__name__,
        "parameters": sum(p.numel() for p in teacher.parameters()),
    }


def _dataset_name(data: Any) -> str | None:
    inner = getattr(data, "dataset", data)  # a Subset or a DataLoader
    inner = getattr(inner, "data", inner) if type(inner).__name__ == "CheckedItems" else inner
    name = getattr(inner, "name", None)
    if isinstance(name, str):
        return name
    return type(inner).__name__ if inner is not None else None


def console_is_terminal() -> bool:
    """Progress bars only where a person watches: stderr is a terminal."""
    return sys.stderr.isatty()


def epoch_summary(record: Mapping[str, Any], epochs: int) -> str:
    """One line per epoch: losses, accuracies, throughput."""
    text = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.2f}% ({record['train_img_per_s']:.0f} img/s)"
    )
    if "val_acc" in record:
        text += f" | val loss {record['val_loss']:.4f} acc {record['val_acc']:.2f}%"
    return text


__all__ = [
    "BEST",
    "LAST",
    "METRICS",
    "RUN",
    "RUN_FILES",
    "FinetuneResult",
    "console_is_terminal",
    "describe_run",
    "epoch_summary",
    "json_safe",
    "metrics_doc",
    "prepare_run_dir",
    "write_strict_json",
]
