"""mmdet configs: load them, wrap their detector in ``autobin.BinarizedDetector``, point them at
a VOC-format dataset such as ``mnist-det``, and write the result as a config file.

``autobin mmdet-config`` is :func:`make_binarized_config` + :func:`write_config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from ...atomic import atomic_write
from ...data.mnist_det import CLASSES, SUB_ROOT, check_voc_root
from ...recipes import load_recipe
from .build import BINARIZED_TYPE, check_detector_cfg, plain
from .errors import DetectorConfigError
from .model import DEFAULT_DISTILL
from .offline import strip_pretrained, warn_stripped

INTEGRATION_MODULE = "autobin.integrations.mmdet"
PACKAGE_PREFIX = "mmdet::"


def shipped_config_path(name: str) -> Path:
    """``mmdet::a/b.py`` -> the file ``a/b.py`` under the installed ``mmdet/.mim/configs``."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / name[len(PACKAGE_PREFIX) :]


def load_config(path: str | os.PathLike[str]):
    """Load an mmdet config file (``mmdet::pascal_voc/ssd300_voc0712.py`` or a path).

    The config's detector (``model``, or the ``detector`` of an ``autobin.BinarizedDetector``)
    is validated here, once, and init_cfg entries that would download weights are removed from
    it with a warning.

    Raises:
        FileNotFoundError: the file does not exist (the message says how to name shipped ones).
        DetectorConfigError: the file cannot be parsed or has no detector.
    """
    from mmengine.config import Config

    text = os.fspath(path)
    file = shipped_config_path(text) if text.startswith(PACKAGE_PREFIX) else Path(text)
    if not file.is_file():
        raise FileNotFoundError(
            f"config {text} does not exist; give a config file path or one shipped with mmdet "
            "as mmdet::<dir>/<file>.py (e.g. mmdet::pascal_voc/ssd300_voc0712.py)"
        )
    try:
        cfg = Config.fromfile(str(file))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"config {text}: {exc}; configs shipped with mmdet are named like "
            "mmdet::pascal_voc/ssd300_voc0712.py (see mmdet/.mim/configs)"
        ) from exc
    except (SyntaxError, ValueError, TypeError, KeyError, ImportError) as exc:
        raise DetectorConfigError(
            f"cannot load config {text}: {type(exc).__name__}: {exc}"
        ) from exc
    _check_model(cfg, text)
    return cfg


def _check_model(cfg: Any, source: str) -> None:
    """Validate the config's detector once, at load, and remove pretrained downloads from it
    (one warning); everything after trusts ``cfg.model``."""
    model = cfg.get("model")
    wrapped = isinstance(model, Mapping) and model.get("type") == BINARIZED_TYPE
    det_cfg = check_detector_cfg(model.get("detector") if wrapped else model, source)
    warn_stripped(strip_pretrained(det_cfg), source)
    if wrapped:
        cfg.model.detector = det_cfg
    else:
        cfg.model = det_cfg


def detector_config(cfg: Any) -> dict:
    """The float detector's model config in a loaded ``cfg`` (unwrapping a BinarizedDetector),
    as a plain dict (:func:`load_config` validated it)."""
    model = cfg.get("model")
    if isinstance(model, Mapping) and model.get("type") == BINARIZED_TYPE:
        model = model.get("detector")
    return plain(model)


def binarized_model_config(cfg: Any, source: str) -> dict | None:
    """The ``autobin.BinarizedDetector`` model dict of ``cfg``, or None for a float config."""
    model = cfg.get("model")
    if isinstance(model, Mapping) and model.get("type") == BINARIZED_TYPE:
        return plain(model)
    return None


def _recipe_ref(recipe: str) -> str:
    """A recipe name as is; a YAML path made absolute (the config may be used elsewhere)."""
    load_recipe(recipe)  # fail now, with the recipe's own error, rather than at train time
    if recipe.endswith((".yaml", ".yml")) or os.sep in recipe:
        return str(Path(recipe).resolve())
    return recipe


def _set_num_classes(cfg: Any, n: int) -> None:
    if isinstance(cfg, MutableMapping):
        for key, value in cfg.items():
            if key == "num_classes":
                cfg[key] = n
            else:
                _set_num_classes(value, n)
    elif isinstance(cfg, list):
        for value in cfg:
            _set_num_classes(value, n)


def _pipeline(cfg: Any, key: str, loader: str) -> list:
    """``cfg[key]`` (train_pipeline / test_pipeline), else the pipeline of ``cfg[loader]``."""
    if cfg.get(key):
        return plain(cfg[key])
    dataset = cfg.get(loader, {}).get("dataset", {})
    while isinstance(dataset, Mapping) and "pipeline" not in dataset:
        inner = dataset.get("dataset") or (dataset.get("datasets") or [None])[0]
        if inner is None:
            break
        dataset = inner
    if isinstance(dataset, Mapping) and dataset.get("pipeline"):
        return plain(dataset["pipeline"])
    raise DetectorConfigError(
        f"the config has no {key} and its {loader} has no dataset pipeline to reuse; add one"
    )


def point_at_voc(cfg: Any, data_root: str | os.PathLike[str], classes=CLASSES) -> None:
    """Make ``cfg`` train on ``trainval`` and evaluate on ``test`` of a VOC-format root.

    Sets the three dataloaders to mmdet's ``VOCDataset`` (with the config's own train/test
    pipelines), the evaluators to ``VOCMetric`` (mAP at IoU 0.5, area mode) and every
    ``num_classes`` of the model to ``len(classes)``.

    Raises:
        VOCLayoutError: ``data_root`` is not VOC-shaped (run ``autobin mmdet-data`` first).
    """
    root = str(Path(data_root).resolve())
    check_voc_root(root)
    train_pipeline = _pipeline(cfg, "train_pipeline", "train_dataloader")
    test_pipeline = _pipeline(cfg, "test_pipeline", "test_dataloader")

    def dataset(split: str, pipeline: list, test_mode: bool) -> dict:
        d = {
            "type": "VOCDataset",
            "data_root": root,
            "ann_file": f"{SUB_ROOT}ImageSets/Main/{split}.txt",
            "data_prefix": {"sub_data_root": SUB_ROOT},
            "metainfo": {"classes": tuple(classes)},
            "pipeline": pipeline,
            "test_mode": test_mode,
        }
        if not test_mode:
            d["filter_cfg"] = {"filter_empty_gt": True, "min_size": 8}
        return d

    train = plain(cfg.get("train_dataloader", {}))
    train.update(dataset=dataset("trainval", train_pipeline, False), num_workers=2,
                 persistent_workers=False)  # fmt: skip
    evaluation = {
        "batch_size": 1,
        "num_workers": 1,
        "persistent_workers": False,
        "drop_last": False,
        "sampler": {"type": "DefaultSampler", "shuffle": False},
        "dataset": dataset("test", test_pipeline, True),
    }
    cfg.train_dataloader = train
    cfg.val_dataloader = evaluation
    cfg.test_dataloader = dict(evaluation)
    metric = {"type": "VOCMetric", "metric": "mAP", "eval_mode": "area"}
    cfg.val_evaluator = metric
    cfg.test_evaluator = dict(metric)
    _set_num_classes(cfg.model, len(classes))


def make_binarized_config(
    source: str | os.PathLike[str],
    recipe: str = "det-adabin",
    *,
    teacher: str | None = None,
    distill: Mapping[str, Any] | None = DEFAULT_DISTILL,
    data_root: str | os.PathLike[str] | None = None,
):
    """An mmengine ``Config``: ``source`` with its detector wrapped in BinarizedDetector.

    Args:
        source: mmdet config (``mmdet::...`` or a path).
        recipe: recipe name or YAML path (checked now).
        teacher: float detector checkpoint for the teacher (and the student's start).
        distill: distillation weights (default ``{}``: feature and cls terms, weight 1);
            None trains without distillation (and without a teacher).
        data_root: a VOC-format root (e.g. from ``autobin mmdet-data mnist-det``) to train on.

    Raises:
        DetectorConfigError: the config has no detector.
        RecipeError: the recipe is invalid.
        VOCLayoutError: ``data_root`` is not VOC-shaped.
    """
    cfg = load_config(source)
    det_cfg = detector_config(cfg)
    model: dict[str, Any] = {
        "type": BINARIZED_TYPE,
        "detector": det_cfg,
        "recipe": _recipe_ref(recipe),
        "distill": dict(distill) if distill is not None else None,
    }
    if teacher is not None:
        model["teacher"] = {"checkpoint": str(Path(teacher).resolve())}
    cfg.model = model
    imports = list((cfg.get("custom_imports") or {}).get("imports", []))
    if INTEGRATION_MODULE not in imports:
        imports.append(INTEGRATION_MODULE)
    cfg.custom_imports = {"imports": imports, "allow_failed_imports": False}
    if data_root is not None:
        point_at_voc(cfg, data_root)
    return cfg


def float_config(source: str | os.PathLike[str], *, data_root=None):
    """``source`` made offline-safe (no pretrained downloads), optionally on a VOC root."""
    cfg = load_config(source)
    cfg.model = detector_config(cfg)
    if data_root is not None:
        point_at_voc(cfg, data_root)
    return cfg


def write_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as a Python config file, atomically; it loads with ``Config.fromfile``."""
    path = Path(path)
    if path.suffix != ".py":
        raise ValueError(f"output config {path} must end in .py (mmengine reads it as Python)")
    text = cfg.pretty_text
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


__all__ = [
    "binarized_model_config",
    "detector_config",
    "float_config",
    "load_config",
    "make_binarized_config",
    "point_at_voc",
    "write_config",
]
