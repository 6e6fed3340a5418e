"""What mmdet needs to run offline and with torch 2.14, handled here rather than in mmdet.

* :func:`strip_pretrained`: ``init_cfg`` entries that would download weights (``open-mmlab://``,
  ``torchvision://``, ``http(s)://`` ...) are removed from a model config, with a warning.
* :func:`fix_predict`: mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads
  ``self.loss_cls``, which ``SSDHead`` never sets (``AttributeError: 'SSDHead' object has no
  attribute 'loss_cls'``); such heads get ``loss_cls = None`` on the instance, which is what
  the check there means (no custom class channels).
* :func:`mmengine_checkpoints`: torch >= 2.6 loads checkpoints with ``weights_only=True``,
  which refuses mmengine 0.10.7's checkpoints (they pickle its log history); around the
  checkpoints a user names (resume, load_from, the teacher) they load as mmengine expects.
* :func:`load_checkpoint_file`: read an mmengine/torch checkpoint's ``state_dict``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import AutobinWarning
from .errors import TeacherCheckpointError

LOCAL_SCHEMES = ("file://",)


def _is_download(checkpoint: Any) -> bool:
    if not isinstance(checkpoint, str):
        return False
    if "://" in checkpoint and not checkpoint.startswith(LOCAL_SCHEMES):
        return True
    return not Path(os.path.expanduser(checkpoint)).is_file()


def strip_pretrained(cfg: Any, path: str = "model") -> list[str]:
    """Remove ``init_cfg`` entries that would download weights; warn; return their key paths.

    Walks ``cfg`` (a model config dict or mmengine ``ConfigDict``) in place. An ``init_cfg`` of
    type ``Pretrained`` whose ``checkpoint`` is a URL (``open-mmlab://``, ``torchvision://``,
    ``https://``, ...) or a missing file is removed; one naming an existing local file stays.
    """
    removed: list[str] = []
    if isinstance(cfg, MutableMapping):
        init = cfg.get("init_cfg")
        entries = init if isinstance(init, list) else [init]
        kept = [
            e
            for e in entries
            if not (
                isinstance(e, MutableMapping)
                and e.get("type") == "Pretrained"
                and _is_download(e.get("checkpoint"))
            )
        ]
        if init is not None and len(kept) != len(entries):
            removed.append(
                f"{path}.init_cfg ({[e.get('checkpoint') for e in entries if e not in kept]})"
            )
            cfg["init_cfg"] = (kept or None) if isinstance(init, list) else None
        for key, value in list(cfg.items()):
            if key != "init_cfg":
                removed += strip_pretrained(value, f"{path}.{key}")
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            removed += strip_pretrained(value, f"{path}[{i}]")
    return removed


class PretrainedInitRemovedWarning(AutobinWarning):
    """A config asked for pretrained weights from the network; autobin removed the request."""


def warn_stripped(removed: list[str], source: str) -> None:
    """One warning listing the pretrained downloads removed from ``source``."""
    if removed:
        warnings.warn(
            f"{source}: removed init_cfg entries that would download pretrained weights (no "
            f"network here): {', '.join(removed)}. The layers start from mmdet's default "
            "initialisation; give a local checkpoint (teacher=dict(checkpoint=...) or "
            "load_from) for trained weights",
            PretrainedInitRemovedWarning,
            stacklevel=3,
        )


def fix_predict(model: nn.Module) -> int:
    """Give dense heads that lack ``loss_cls`` (mmdet 3.3.0's SSDHead) ``loss_cls = None``.

    Returns the number of heads fixed. Only the instances are changed, never mmdet's classes.
    """
    fixed = 0
    for module in model.modules():
        if hasattr(module, "predict_by_feat") and hasattr(module, "cls_out_channels"):
            try:
                module.loss_cls  # noqa: B018 - probing for the attribute mmdet 3.3.0 reads
            except AttributeError:
                module.__dict__["loss_cls"] = None
                fixed += 1
    return fixed


@contextlib.contextmanager
def mmengine_checkpoints() -> Iterator[None]:
    """Let mmengine read its own checkpoints (resume, load_from) under torch >= 2.6.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, and its checkpoints pickle
    its log history (bound methods through ``getattr``, numpy arrays), which torch's
    ``weights_only`` default refuses. Inside this block those loads unpickle fully, as mmengine
    did before torch 2.6: use it only around checkpoints the user named (their own runs).
    """
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Environment variable " + key)
            yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def load_checkpoint_file(
    path: str | os.PathLike[str], what: str = "teacher checkpoint"
) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an mmengine (or plain torch) checkpoint file, on the CPU.

    Args:
        path: the file.
        what: what the file is, for the messages (``"teacher checkpoint"``, ``"checkpoint"``).

    Raises:
        TeacherCheckpointError: the file is missing, empty, unreadable (garbage, truncated) or
            holds no state dict.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        fix = "give a .pth written by mmdet-train (e.g. WORK_DIR/epoch_N.pth)"
        if what in ("teacher checkpoint", "float checkpoint"):
            fix = (
                "give the .pth file of a trained float detector (e.g. "
                "work_dirs/float_ssd/epoch_24.pth)"
            )
        if what == "teacher checkpoint":
            fix += " or leave teacher unset to use the student's starting float weights"
        raise TeacherCheckpointError(f"{what} {path} does not exist; {fix}")
    if path.stat().st_size == 0:
        raise TeacherCheckpointError(f"{what} {path} is empty (0 bytes); {READABLE}")
    try:
        with mmengine_checkpoints():
            data = torch.load(path, map_location="cpu")
    except Exception as exc:
        raise TeacherCheckpointError(
            f"cannot read {what} {path}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} (damaged or truncated?); {READABLE}"
        ) from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherCheckpointError(f"{what} {path} holds no state dict of tensors; {READABLE}")
    return state


READABLE = "give a checkpoint written by mmengine's Runner or torch.save(model.state_dict())"


__all__ = [
    "PretrainedInitRemovedWarning",
    "fix_predict",
    "load_checkpoint_file",
    "mmengine_checkpoints",
    "strip_pretrained",
    "warn_stripped",
]
