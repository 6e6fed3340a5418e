"""Publish a trained binarized detector to the zoo from its mmdet config and checkpoint.

``autobin mmdet-publish CONFIG CHECKPOINT NAME [--zoo-dir DIR]`` is :func:`publish_detector`:
the config must wrap its detector in ``autobin.BinarizedDetector`` (what ``autobin
mmdet-config`` writes), the checkpoint must be one that config's training wrote (its state dict
fits the binarized student exactly), and the name must be free. Every check runs before
anything is written; the entry itself is written atomically by :func:`autobin.zoo.publish`,
which also rebuilds it from the stored config and checks that it loads back identical.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import MMDetIntegrationError


class DetectorPublishError(MMDetIntegrationError):
    """A config, checkpoint or name that cannot be published as a binarized detector."""


def _binarized_model_config(config: str | os.PathLike[str]) -> dict:
    """The ``autobin.BinarizedDetector`` model dict of ``config``, with its ``input_size``.

    A config without ``model.input_size`` gets the square its test pipeline resizes to (the
    size the detector was made for, e.g. 128 for the 128x128 SSD), else none.
    """
    from .build import BINARIZED_TYPE, plain
    from .config import load_config

    cfg = load_config(config)
    model = cfg.get("model")
    if not isinstance(model, Mapping) or model.get("type") != BINARIZED_TYPE:
        kind = model.get("type") if isinstance(model, Mapping) else None
        raise DetectorPublishError(
            f"{config} describes a float detector ({kind}), not a binarized one; publish the "
            f"config that `autobin mmdet-config CONFIG --recipe RECIPE -o OUT.py` writes (model "
            f"type {BINARIZED_TYPE}) with a checkpoint its training wrote"
        )
    model = plain(model)
    if model.get("input_size") is None:
        model["input_size"] = _resize_scale(cfg)
    return model


def _resize_scale(cfg) -> list[int] | None:
    """``[H, W]`` of the ``Resize`` in the config's test pipeline, if it has a fixed scale."""
    pipeline = (cfg.get("test_dataloader") or {}).get("dataset", {}).get("pipeline") or []
    for step in pipeline:
        scale = step.get("scale") if step.get("type") == "Resize" else None
        if isinstance(scale, (list, tuple)) and len(scale) == 2 and not step.get("keep_ratio"):
            return [int(scale[1]), int(scale[0])]  # mmcv scales are (w, h)
    return None


def _check_name_free(name: str, zoo_dir: Path, overwrite: bool) -> None:
    from ...zoo.index import check_name, read_index

    check_name(name)
    if overwrite or not zoo_dir.is_dir():
        return
    if name in read_index(zoo_dir)["models"] or (zoo_dir / name).exists():
        raise DetectorPublishError(
            f"zoo {zoo_dir} already has an entry named {name!r}; choose another name or pass "
            "--overwrite (overwrite=True) to replace it"
        )


def _load_student(model_cfg: dict, config: str, checkpoint: str) -> nn.Module:
    """The binarized student of ``model_cfg`` with the checkpoint's weights, in eval mode."""
    from .model import BinarizedDetector
    from .offline import load_checkpoint_file

    options = {k: v for k, v in model_cfg.items() if k not in ("type", "teacher", "distill")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretrained downloads removed: warned at training time
        wrapper = BinarizedDetector(**options, teacher=None, distill=None)
    state = load_checkpoint_file(checkpoint)
    result = wrapper.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} weights of the binarized detector are missing "
                f"(e.g. {', '.join(missing[:3])})"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} are not the detector's (e.g. {', '.join(unexpected[:3])})"
            )
        float_hint = (
            " (it looks like a float detector's checkpoint)"
            if any(k.endswith(".act_alpha") for k in missing)
            else ""
        )
        raise DetectorPublishError(
            f"checkpoint {checkpoint} does not fit {config}{float_hint}: {'; '.join(parts)}. "
            "Give a checkpoint written by `autobin mmdet-train` of this very config"
        )
    return wrapper.detector.eval()


def load_student(config: str | os.PathLike[str], checkpoint: str | os.PathLike[str]) -> nn.Module:
    """The binarized detector of ``config`` (an ``mmdet-config`` output) with the weights its
    training wrote to ``checkpoint``, in eval mode, without a teacher.

    Raises:
        DetectorPublishError: a float config, or a checkpoint that does not fit the config.
    """
    config, checkpoint = str(config), str(checkpoint)
    return _load_student(_binarized_model_config(config), config, checkpoint)


def publish_detector(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    name: str,
    *,
    zoo_dir: str | os.PathLike[str] = "zoo",
    metrics: Mapping[str, float] | None = None,
    dataset: Any = None,
    teacher: Any = None,
    schedule: Any = None,
    overwrite: bool = False,
) -> Path:
    """Publish the binarized detector of ``config`` with ``checkpoint``'s weights as ``name``.

    Args:
        config: a binarized mmdet config (``model.type = 'autobin.BinarizedDetector'``, as
            written by ``autobin mmdet-config``).
        checkpoint: a checkpoint its training wrote (``WORK_DIR/iter_N.pth``).
        name: the zoo entry name.
        zoo_dir: the zoo directory (created if absent).
        metrics, dataset, teacher, schedule: recorded in the entry (see
            :func:`autobin.zoo.publish`).
        overwrite: replace an existing entry of that name.

    Returns:
        The entry directory; ``autobin.zoo.load(name, zoo_dir=zoo_dir)`` rebuilds the detector.

    Raises:
        DetectorPublishError: a float config, a checkpoint that does not fit the config, or a
            name that exists (nothing is written in each case).
        FileNotFoundError: the config or the checkpoint does not exist.
    """
    from ... import zoo
    from .family import default_input_size

    config, checkpoint, zoo_dir = str(config), str(checkpoint), Path(zoo_dir)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} does not exist; give a .pth written by mmdet-train"
        )
    model_cfg = _binarized_model_config(config)
    _check_name_free(name, zoo_dir, overwrite)
    detector = _load_student(model_cfg, config, checkpoint)
    size = model_cfg.get("input_size") or default_input_size(detector)
    with torch.no_grad():
        return zoo.publish(
            detector,
            name,
            zoo_dir=zoo_dir,
            metrics=metrics,
            dataset=dataset,
            teacher=teacher,
            schedule=schedule,
            input_size=[3, int(size[0]), int(size[1])],
            overwrite=overwrite,
        )


__all__ = ["DetectorPublishError", "load_student", "publish_detector"]
