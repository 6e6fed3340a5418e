"""Atomic, verified checkpoint files and random-number-generator state capture.

Checkpoints go through :func:`autobin.atomic.atomic_write`, so a crash while saving never
leaves a truncated ``last.pt``: readers see either the previous complete file or the new one.

A checkpoint is an ordinary ``torch.save`` file (``torch.load`` reads it), whose zip container
carries a CRC-32 checksum of every record (pickled structure and each tensor's bytes).
:func:`load_checkpoint` verifies the container and every checksum before unpickling anything,
so a file damaged after it was written (truncated, emptied, a flipped byte) is refused with a
:class:`~autobin.train.errors.CheckpointError` naming the file, never loaded silently.

What a run's checkpoint holds is written by :func:`checkpoint_state` and read back by
:func:`resume_run`, which refuses a checkpoint of another kind of run or of other data, warns
about a changed config, and continues a run saved with another number of processes at the
epoch boundary.
"""

from __future__ import annotations

import random
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from ..atomic import atomic_write
from .config import TrainConfig
from .errors import CheckpointError, TrainWarning
from .outputs import LAST

if TYPE_CHECKING:
    from torch import nn

    from .distributed import Ranks

CHECKPOINT_FORMAT = "autobin.train/1"

# Config keys that may change between an interrupted run and its resumption without a warning.
RESUME_FREE_KEYS = {
    "progress", "plots", "num_workers", "device", "eval_batch_size", "compile", "channels_last",
}  # fmt: skip


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` ``state`` (plain data and tensors only) to ``path``."""
    return atomic_write(path, lambda fh: torch.save(state, fh))


def verify_checkpoint_file(path: str | Path) -> None:
    """Check that ``path`` is a complete ``torch.save`` file whose record checksums all match.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is empty, truncated, not a torch zip file, or a record's
            CRC-32 does not match its bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    fix = (
        "it was damaged after it was written; delete it and resume from another checkpoint "
        "(best.pt) or start the run again"
    )
    if size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} ({size} bytes) is truncated or not a torch checkpoint "
            f"({exc}): {fix}"
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: record {bad!r} does not match its checksum: {fix}"
        )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs).

    The file's checksums are verified first (:func:`verify_checkpoint_file`).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is damaged or is not an autobin training checkpoint.
    """
    path = Path(path)
    verify_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch reports damage as RuntimeError, EOFError, pickle errors
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); it is "
            "damaged or was not written by autobin"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an autobin training checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as checkpoint-safe plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            pos,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in states])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------- a run's checkpoint
class Progress(NamedTuple):
    """Where a run stands after ``epoch`` epochs: the counters and metrics its checkpoint keeps."""

    epoch: int
    step: int
    history: list[dict[str, Any]]
    best_val_acc: float | None
    best_epoch: int | None


def checkpoint_state(
    progress: Progress,
    *,
    kind: str,
    steps_per_epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    world_size: int,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """What ``last.pt`` and ``best.pt`` hold: everything :func:`resume_run` needs, and the RNGs."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "epoch": progress.epoch,
        "step": progress.step,
        "steps_per_epoch": steps_per_epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": capture_rng_state(),
        "history": progress.history,
        "best_val_acc": progress.best_val_acc,
        "best_epoch": progress.best_epoch,
        "config": config.to_dict(),
        "world_size": world_size,
        **metadata,
    }


def resume_path(out_dir: Path, resume: bool | str | Path) -> Path | None:
    """The checkpoint a run continues from: ``out_dir/last.pt`` for ``True``, else ``resume``.

    ``resume=True`` without ``last.pt`` warns and starts a fresh run (``None``).

    Raises:
        FileNotFoundError: ``resume`` names a file that does not exist.
    """
    if resume is False or resume is None:
        return None
    if resume is True:
        path = out_dir / LAST
        if not path.is_file():
            warnings.warn(
                f"resume=True but {str(path)!r} does not exist; starting a fresh run",
                TrainWarning,
                stacklevel=5,
            )
            return None
        return path
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume checkpoint {str(path)!r} does not exist")
    return path


def resume_run(
    path: Path,
    *,
    kind: str,
    config: TrainConfig,
    steps_per_epoch: int,
    ranks: Ranks,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> Progress:
    """Restore ``model``, ``optimizer``, ``scheduler``, ``scaler`` and the RNGs from ``path``.

    Returns the progress to continue from. A checkpoint saved with another number of processes
    continues at this run's step of the same epoch boundary (with a warning).

    Raises:
        CheckpointError: the file is damaged or not an autobin training checkpoint.
        ValueError: the checkpoint is of another kind of run, or (same number of processes) ran
            another number of steps per epoch.
    """
    state = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
    if state.get("kind") != kind:
        raise ValueError(
            f"{str(path)!r} is a {state.get('kind')!r} checkpoint; cannot resume a "
            f"{kind!r} run from it"
        )
    saved_world = int(state.get("world_size", 1))
    rescale = state["steps_per_epoch"] != steps_per_epoch
    if rescale and saved_world == ranks.world:
        raise ValueError(
            f"cannot resume from {str(path)!r}: it ran {state['steps_per_epoch']} steps per "
            f"epoch, this run has {steps_per_epoch} (different data or batch_size)"
        )
    defaults = TrainConfig().to_dict()
    changed = sorted(
        k
        for k, v in config.to_dict().items()
        if k not in RESUME_FREE_KEYS and state["config"].get(k, defaults[k]) != v
    )
    if changed:
        warnings.warn(
            f"resuming from {str(path)!r} with a different training config ({changed}); "
            "the result will differ from an uninterrupted run",
            TrainWarning,
            stacklevel=5,
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    start_epoch, step = int(state["epoch"]), int(state["step"])
    if saved_world != ranks.world:
        # Same epochs, same permutation per epoch, other batches: the step counter (and the
        # per-step schedule) continue at this world size's position of the epoch boundary.
        step = start_epoch * steps_per_epoch
        scheduler.last_epoch = step
        if ranks.main:
            warnings.warn(
                f"resuming a {saved_world}-process run with {ranks.world} process(es): "
                f"each epoch visits the same samples, in batches of {ranks.world} x "
                f"{config.batch_size} instead of {saved_world} x "
                f"{state['config'].get('batch_size')}, so the result is close to but not "
                "equal to an uninterrupted run",
                TrainWarning,
                stacklevel=5,
            )
    return Progress(
        start_epoch, step, list(state["history"]), state["best_val_acc"], state["best_epoch"]
    )


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
