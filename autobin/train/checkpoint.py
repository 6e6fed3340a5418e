"""Atomic, verified checkpoint files and random-number-generator state capture.

Checkpoints go through :func:`autobin.atomic.atomic_write`, so a crash while saving never
leaves a truncated ``last.pt``: readers see either the previous complete file or the new one.

A checkpoint is an ordinary ``torch.save`` file (``torch.load`` reads it), whose zip container
carries a CRC-32 checksum of every record (pickled structure and each tensor's bytes).
:func:`load_checkpoint` verifies the container and every checksum before unpickling anything,
so a file damaged after it was written (truncated, emptied, a flipped byte) is refused with a
:class:`~autobin.train.errors.CheckpointError` naming the file, never loaded silently.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write
from .errors import CheckpointError

CHECKPOINT_FORMAT = "autobin.train/1"


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


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
