"""Build float mmdet detectors from model configs (offline-safe, mmdet's registry and scope)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from .errors import DetectorConfigError
from .offline import fix_predict, strip_pretrained, warn_stripped

BINARIZED_TYPE = "autobin.BinarizedDetector"
ARCHITECTURE_ATTRIBUTE = "autobin_mmdet_architecture"
"""Attribute of a float detector built by :func:`build_float_detector`: its zoo record (read by
the mmdet family, :mod:`.family`)."""


def is_detector(model: nn.Module) -> bool:
    """Whether ``model`` looks like an mmdet detector (a backbone and ``extract_feat``)."""
    return hasattr(model, "extract_feat") and hasattr(model, "backbone")


def check_detector(detector: nn.Module) -> None:
    """Raise :class:`DetectorConfigError` unless ``detector`` looks like an mmdet detector."""
    if not is_detector(detector):
        raise DetectorConfigError(
            f"{type(detector).__name__} is not an mmdet detector (it has no backbone / "
            "extract_feat); pass a model built from an mmdet detector config such as "
            "mmdet::pascal_voc/ssd300_voc0712.py"
        )


def plain(cfg: Any) -> Any:
    """A config value as plain dicts/lists/tuples (``ConfigDict`` -> ``dict``), deep-copied.

    Tuples stay tuples: mmdet checks some arguments with ``is_tuple_of``.
    """
    if isinstance(cfg, Mapping):
        return {str(k): plain(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return tuple(plain(v) for v in cfg)
    if isinstance(cfg, list):
        return [plain(v) for v in cfg]
    return copy.deepcopy(cfg)


def architecture(det_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The zoo ``architecture`` record of a detector built from ``det_cfg``.

    ``config`` is the model config as mmengine Python config text (``model = dict(...)``):
    exact where JSON is not (tuples stay tuples), readable, and loaded with
    ``Config.fromstring``.
    """
    from mmengine.config import Config

    cfg = plain(det_cfg)
    text = Config({"model": cfg}).pretty_text
    return {"library": "mmdet", "name": str(cfg["type"]), "kwargs": {}, "config": text}


def model_config_from_text(text: str, source: str) -> dict:
    """The ``model`` dict of a config text written by :func:`architecture`."""
    from mmengine.config import Config

    try:
        cfg = Config.fromstring(text, ".py")
    except Exception as exc:
        raise DetectorConfigError(
            f"{source}: cannot parse the embedded mmdet config: {exc}"
        ) from exc
    return check_detector_cfg(cfg.get("model"), source)


def check_detector_cfg(det_cfg: Any, source: str) -> dict:
    """Return ``det_cfg`` as a plain dict, or raise if it cannot describe a detector."""
    if not isinstance(det_cfg, Mapping) or not isinstance(det_cfg.get("type"), str):
        raise DetectorConfigError(
            f"{source}: the config has no detector: 'model' must be a dict with a 'type' (e.g. "
            "SingleStageDetector); start from an mmdet detector config such as "
            "mmdet::pascal_voc/ssd300_voc0712.py"
        )
    if det_cfg["type"] == BINARIZED_TYPE:
        raise DetectorConfigError(
            f"{source}: the detector is already an {BINARIZED_TYPE}; give its float detector "
            "config (model.detector) instead"
        )
    if "backbone" not in det_cfg:
        raise DetectorConfigError(
            f"{source}: model type {det_cfg['type']!r} has no backbone, so it is not an mmdet "
            "detector autobin can binarize; use a detector config (backbone, neck, head) such "
            "as mmdet::pascal_voc/ssd300_voc0712.py"
        )
    return plain(det_cfg)


def _quiet_init(detector: nn.Module) -> None:
    """``detector.init_weights()`` without mmengine's per-parameter INFO report."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        detector.init_weights()
    finally:
        logger.setLevel(level)


def build_float_detector(det_cfg: Mapping[str, Any], source: str = "model config") -> nn.Module:
    """Build and initialise a float mmdet detector from its model config, offline.

    ``init_cfg`` entries that would download weights are removed with a warning; mmdet's
    default initialisation then runs (``init_weights``); heads hit by mmdet 3.3.0's
    ``loss_cls`` predict bug are fixed on the instance.
    """
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope

    cfg = check_detector_cfg(det_cfg, source)
    warn_stripped(strip_pretrained(cfg), source)
    try:
        with DefaultScope.overwrite_default_scope("mmdet"):
            detector = MODELS.build(ConfigDict(cfg))  # mmdet reads test_cfg.x attributes
    except KeyError as exc:
        raise DetectorConfigError(
            f"{source}: mmdet cannot build model type {cfg['type']!r}: {exc}; use a detector "
            "type registered in mmdet (SingleStageDetector, RetinaNet, SSD configs, ...)"
        ) from exc
    check_detector(detector)
    _quiet_init(detector)
    fix_predict(detector)
    detector.__dict__[ARCHITECTURE_ATTRIBUTE] = architecture(cfg)  # the zoo record
    return detector


__all__ = [
    "ARCHITECTURE_ATTRIBUTE",
    "BINARIZED_TYPE",
    "architecture",
    "build_float_detector",
    "check_detector",
    "check_detector_cfg",
    "is_detector",
    "plain",
]
