"""The ``config.json`` of a zoo entry: what it holds, how it is built and validated.

Layout (format version 1)::

    {
      "format": "autobin.zoo.entry", "format_version": 1,
      "autobin_version": "0.1.0",
      "name": "resnet18-adabin",
      "created": "2025-01-01T00:00:00+00:00",
      "license": "apache-2.0",
      "architecture": {"library": "timm", "name": "resnet18", "kwargs": {"num_classes": 1000}},
      "input_size": [3, 224, 224],                  # or null
      "recipe": {...},                              # Recipe.to_dict(), or null
      "recipe_sha256": "<hex>",                     # or null (with recipe null)
      "dataset": ..., "teacher": ..., "schedule": ...,   # JSON values or null
      "metrics": {"top1": 63.1},
      "report": {"totals": {...}},                  # graph-pass report totals, or null
      "weights": {"file": "model.safetensors", "float_dtype": "float32", "keep_latent": false,
                  "bit_order": "little", "binary_layers": 19, "binary_params": 10960896,
                  "sign_bytes": 1370112, "file_bytes": 4387000, "float32_bytes": 46827520}
    }

The recipe's sha256 is checked on load: ``Recipe.from_dict(recipe).sha256`` (the sha256 of the
recipe's canonical JSON) must equal ``recipe_sha256``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..graph.families import known_libraries
from ..graph.families.timm import creation_kwargs
from ..model_info import ModelInfo, info
from ..recipes import Recipe, as_recipe
from ..timm_metadata import timm_config
from ..version import __version__
from .errors import ZooFormatError
from .format import FLOAT_DTYPES, WEIGHTS_FILE

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
CONFIG_FORMAT = "autobin.zoo.entry"
CONFIG_VERSION = 1
ARCH_LIBRARIES: tuple[str, ...] = ("timm", "torchvision", "mmdet")
"""The built-in families' libraries. ``timm`` and ``torchvision``: rebuilt by name (with
``kwargs``); ``mmdet``: the detector's model config (Python config text) is under ``config``.
A registered family adds its own (:func:`autobin.graph.families.known_libraries`)."""


def recipe_to_dict(recipe: Any) -> tuple[dict[str, Any], str]:
    """``(recipe_dict, sha256)`` of a recipe in any form :func:`autobin.recipes.as_recipe` takes.

    A dict is validated and normalized through ``Recipe.from_dict``; a name or a path is loaded.

    Raises:
        autobin.recipes.RecipeError: the recipe is invalid or of another type.
    """
    if isinstance(recipe, Mapping) and "extends" not in recipe:
        recipe = Recipe.from_dict(dict(recipe), source="recipe given to publish")
    recipe = as_recipe(recipe)
    return json.loads(json.dumps(recipe.to_dict())), recipe.sha256


def recipe_digest(recipe: Mapping[str, Any], source: str = "<dict>") -> str:
    """sha256 of a recipe dict as :attr:`autobin.recipes.Recipe.sha256` defines it.

    Raises:
        autobin.recipes.RecipeError: the dict is not a valid recipe.
    """
    return Recipe.from_dict(dict(recipe), source=source).sha256


def check_json_value(value: Any, what: str) -> Any:
    """Return ``value`` as plain JSON data (a deep copy), or raise a ValueError naming ``what``."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{what} must be JSON data (str, number, bool, None, lists and dicts of them), "
            f"got {type(value).__name__}: {e}"
        ) from e


def check_metrics(metrics: Any, what: str = "metrics") -> dict[str, float | int]:
    """Return ``metrics`` if it maps names to finite numbers, else raise a ValueError."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{what} must be a dict of name -> number, got {type(metrics).__name__}")
    out: dict[str, float | int] = {}
    for k, v in metrics.items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not isinstance(k, str) or not ok:
            raise ValueError(
                f"{what}: entry {k!r} = {v!r} is not a name -> finite number pair "
                "(e.g. {'top1': 63.1})"
            )
        out[k] = v
    return out


def _get(config: Mapping[str, Any], dotted: str, types: type | tuple[type, ...], path: Path) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ZooFormatError(f"{path}: missing required key {dotted!r}")
        node = node[part]
    if not isinstance(node, types) or (isinstance(node, bool) and bool not in _tuple(types)):
        names = " or ".join(t.__name__ for t in _tuple(types))
        raise ZooFormatError(f"{path}: key {dotted!r} must be {names}, got {node!r}")
    return node


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def validate_config(config: Any, path: str | Path = CONFIG_FILE) -> dict[str, Any]:
    """Validate an entry config dict; return it. Errors name the file and the key.

    Raises:
        ZooFormatError: wrong format tag or version, a missing or mistyped key, or a recipe
            whose sha256 does not match its content.
    """
    path = Path(path)
    if not isinstance(config, dict):
        raise ZooFormatError(f"{path}: must hold a JSON object, got {type(config).__name__}")
    if config.get("format") != CONFIG_FORMAT:
        raise ZooFormatError(
            f"{path}: 'format' is {config.get('format')!r}, expected {CONFIG_FORMAT!r}"
        )
    version = _get(config, "format_version", int, path)
    if version != CONFIG_VERSION:
        raise ZooFormatError(
            f"{path}: entry format version {version} is not supported (supports "
            f"{CONFIG_VERSION}); upgrade autobin"
        )
    _get(config, "autobin_version", str, path)
    _get(config, "name", str, path)
    library = _get(config, "architecture.library", str, path)
    libraries = tuple(dict.fromkeys([*ARCH_LIBRARIES, *known_libraries()]))
    if library not in libraries:
        raise ZooFormatError(
            f"{path}: 'architecture.library' is {library!r}; valid choices are {list(libraries)}"
        )
    _get(config, "architecture.name", str, path)
    _get(config, "architecture.kwargs", dict, path)
    if library == "mmdet":
        _get(config, "architecture.config", str, path)
    try:
        check_metrics(config.get("metrics"), f"{path}: 'metrics'")
    except ValueError as e:
        raise ZooFormatError(str(e)) from e
    if _get(config, "weights.file", str, path) != WEIGHTS_FILE:
        raise ZooFormatError(f"{path}: 'weights.file' must be {WEIGHTS_FILE!r}")
    if _get(config, "weights.float_dtype", str, path) not in FLOAT_DTYPES:
        raise ZooFormatError(
            f"{path}: 'weights.float_dtype' must be one of {list(FLOAT_DTYPES)}, got "
            f"{config['weights']['float_dtype']!r}"
        )
    _get(config, "weights.keep_latent", bool, path)
    input_size = config.get("input_size")
    if input_size is not None and not (
        isinstance(input_size, list) and all(isinstance(d, int) and d > 0 for d in input_size)
    ):
        raise ZooFormatError(f"{path}: 'input_size' must be a list of positive ints or null")
    _check_recipe(config, path)
    return config


def _check_recipe(config: Mapping[str, Any], path: Path) -> None:
    recipe, digest = config.get("recipe"), config.get("recipe_sha256")
    if recipe is None and digest is None:
        return
    if not isinstance(recipe, dict) or not isinstance(digest, str):
        raise ZooFormatError(
            f"{path}: 'recipe' (an object) and 'recipe_sha256' (a string) go together; got "
            f"{type(recipe).__name__} and {type(digest).__name__}"
        )
    try:
        actual = recipe_digest(recipe, source=f"{path}: 'recipe'")
    except (ValueError, TypeError, KeyError) as e:
        raise ZooFormatError(f"{path}: the embedded recipe is invalid: {e}") from e
    if actual != digest:
        raise ZooFormatError(
            f"{path}: the embedded recipe's sha256 is {actual} but 'recipe_sha256' records "
            f"{digest}; the recipe was edited after publishing"
        )


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``config.json``.

    Raises:
        ZooFormatError: unreadable, not JSON, or invalid (see :func:`validate_config`).
    """
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooFormatError(f"{path}: cannot read the entry config ({e})") from e
    return validate_config(config, path)


# --------------------------------------------------------------------------- building
def _binarized_input_shape(record: ModelInfo | None) -> list[int] | None:
    """``(C, H, W)`` of the example input the model was binarized with, if recorded."""
    shape = getattr(record.report, "input_shape", None) if record is not None else None
    return [int(d) for d in shape] if shape is not None and len(shape) == 3 else None


def _report_totals(record: ModelInfo | None) -> dict[str, Any] | None:
    report = record.report if record is not None else None
    if report is None:
        return None
    data = report.to_dict() if hasattr(report, "to_dict") else report
    totals = data.get("totals") if isinstance(data, Mapping) else None
    return {"totals": check_json_value(totals, "report totals")} if totals else None


def _default_input_size(cfg: Mapping[str, Any], kwargs: Mapping[str, Any]) -> list[int] | None:
    """``pretrained_cfg['input_size']`` adjusted for ``in_chans`` / ``img_size`` arguments."""
    size = cfg.get("input_size")
    if not isinstance(size, (list, tuple)) or len(size) != 3:
        return None
    c, h, w = (int(d) for d in size)
    if isinstance(kwargs.get("in_chans"), int):
        c = kwargs["in_chans"]
    img = kwargs.get("img_size")
    if isinstance(img, int):
        h = w = img
    elif isinstance(img, (list, tuple)) and len(img) == 2:
        h, w = (int(d) for d in img)
    return [c, h, w]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _architecture(
    model: nn.Module, record: ModelInfo | None, arch: str | None, arch_kwargs: Any
) -> dict[str, Any]:
    """The entry's ``architecture``: the model's own record (any family), or the timm name
    ``arch`` given by the caller."""
    recorded = record.architecture if record is not None else None
    if arch is None and recorded is not None:
        architecture = dict(recorded)
        if arch_kwargs is not None:
            architecture["kwargs"] = dict(arch_kwargs)
        return check_json_value(architecture, "architecture")
    if arch is None:
        cfg = timm_config(model)
        arch = cfg.get("architecture")
    if not isinstance(arch, str) or not arch:
        raise ValueError(
            "publish needs the model's architecture: the model was not made by autobin.binarize "
            "from a timm, torchvision or mmdet model whose architecture is known, so pass "
            "arch= (the timm name, e.g. arch='resnet18')"
        )
    if arch_kwargs is None:
        same = recorded is not None and recorded.get("name") == arch
        if same:
            arch_kwargs = recorded.get("kwargs", {})
        elif timm_config(model).get("architecture") == arch:
            arch_kwargs = creation_kwargs(model, timm_config(model), _binarized_input_shape(record))
        else:
            arch_kwargs = {}
    return {"library": "timm", "name": arch,
            "kwargs": check_json_value(dict(arch_kwargs), "arch_kwargs")}  # fmt: skip


def build_entry_config(
    model: nn.Module,
    name: str,
    *,
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None,
    recipe: Any,
    input_size: Any,
    metrics: Any,
    dataset: Any,
    teacher: Any,
    schedule: Any,
    license: str,
) -> dict[str, Any]:
    record = info(model)
    architecture = _architecture(model, record, arch, arch_kwargs)
    if recipe is None and record is not None:
        recipe = record.recipe
    recipe_dict, recipe_sha = recipe_to_dict(recipe) if recipe is not None else (None, None)
    if input_size is None:
        input_size = _binarized_input_shape(record)
    if input_size is None and architecture["library"] == "timm":
        input_size = _default_input_size(timm_config(model), architecture["kwargs"])
    return _config_record(name, architecture, input_size, recipe_dict, recipe_sha, metrics,
                          dataset, teacher, schedule, license, record)  # fmt: skip


def _config_record(
    name, architecture, input_size, recipe_dict, recipe_sha, metrics, dataset, teacher, schedule,
    license, record,
) -> dict[str, Any]:  # fmt: skip
    if input_size is not None:
        input_size = [int(d) for d in input_size]
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "autobin_version": __version__,
        "name": name,
        "created": _now(),
        "license": license,
        "architecture": architecture,
        "input_size": input_size,
        "recipe": recipe_dict,
        "recipe_sha256": recipe_sha,
        "dataset": check_json_value(dataset, "dataset"),
        "teacher": check_json_value(teacher, "teacher"),
        "schedule": check_json_value(schedule, "schedule"),
        "metrics": check_metrics(metrics),
        "report": _report_totals(record),
    }


__all__ = [
    "ARCH_LIBRARIES",
    "CARD_FILE",
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "CONFIG_VERSION",
    "check_json_value",
    "check_metrics",
    "read_config",
    "recipe_digest",
    "recipe_to_dict",
    "validate_config",
]
