"""Publishing into a zoo: write an entry atomically and record it in the index.

:func:`publish` stores a binarized model as the entry ``zoo_dir/name`` (the layout is described
in :mod:`autobin.zoo.reading`); :func:`publish_run` publishes the best checkpoint of a finetune
run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import fsync_dir
from ..quantizers.packing import BIT_ORDER
from .card import render_card
from .config import CARD_FILE, CONFIG_FILE, build_entry_config, check_metrics
from .errors import ZooFormatError
from .format import (
    WEIGHTS_FILE,
    FloatDtype,
    binary_layers,
    check_float_dtype,
    save_packed,
)
from .index import (
    CHECKSUMS_FILE,
    check_name,
    check_zoo_dir,
    dumps_json,
    index_lock,
    read_index,
    render_checksums,
    sha256_file,
    write_file_synced,
    write_index,
)
from .maintenance import (
    OWNER_FILE,
    PUBLISH_PREFIX,
    REPLACED_PREFIX,
    clean_interrupted,
    write_owner,
)
from .rebuild import (
    Rebuild,
    can_rebuild,
    check_rebuild_matches,
    default_rebuild,
    family_rebuild,
)


def publish(
    model: nn.Module,
    name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    zoo_dir: str | os.PathLike[str] = "zoo",
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    dataset: Any = None,
    teacher: Any = None,
    schedule: Any = None,
    float_dtype: FloatDtype = "float32",
    keep_latent: bool = False,
    overwrite: bool = False,
    recipe: Any = None,
    input_size: list[int] | tuple[int, ...] | None = None,
    license: str = "apache-2.0",
    rebuild: Rebuild | None = None,
    check_rebuild: bool = True,
) -> Path:
    """Publish a binarized model as the zoo entry ``zoo_dir/name``, atomically.

    All files are written to a temporary directory inside ``zoo_dir`` and fsynced, the directory
    is renamed into place and ``index.json`` is replaced atomically; if anything fails (or the
    process is interrupted) the zoo keeps its previous entries and index.

    Args:
        model: a binarized model (its binary layers are :class:`autobin.nn.BinaryLayer`).
        name: entry name (``A-Z a-z 0-9 . _ -``, see :func:`autobin.zoo.index.check_name`).
        metrics: ``{name: number}``, e.g. ``{"top1": 63.1}``.
        zoo_dir: the zoo directory (created if absent).
        arch: timm architecture name; default: the architecture the model's family recorded
            when it was binarized (``autobin.info(model).architecture``: a timm, torchvision or
            mmdet model), else ``model.pretrained_cfg["architecture"]``.
        arch_kwargs: ``timm.create_model`` arguments (``num_classes``, ``in_chans``, ...);
            default: the recorded ones when ``arch`` came from the model.
        dataset, teacher, schedule: JSON data describing the training (stored and shown).
        float_dtype: ``"float32"`` or ``"float16"``: storage of the float parts.
        keep_latent: also store the latent float weights of the binary layers, so
            ``load(..., keep_latent=True)`` gives a trainable model.
        overwrite: replace an existing entry of the same name.
        recipe: the :class:`autobin.recipes.Recipe` (or its dict); default
            ``autobin.info(model).recipe``.
        input_size: ``(C, H, W)``, also the example input shape when rebuilding; default: the
            input the model was binarized with (``autobin.info(model).report.input_shape``),
            else ``model.pretrained_cfg["input_size"]`` with ``in_chans``/``img_size`` from
            ``arch_kwargs`` applied.
        license: license identifier for the model card.
        rebuild: how to rebuild the model from its config (default: timm + autobin.binarize);
            used to check, before writing, that the entry can be loaded again.
        check_rebuild: do that check when a rebuild is available.

    Returns:
        The entry directory.

    Raises:
        ValueError: bad name, option, metrics or arguments, or the model cannot be rebuilt
            from the given architecture and recipe.
        FileExistsError: the entry exists and ``overwrite`` is False.
    """
    check_name(name)
    check_float_dtype(float_dtype)
    zoo = Path(zoo_dir)
    config = build_entry_config(
        model, name, arch=arch, arch_kwargs=arch_kwargs, recipe=recipe, input_size=input_size,
        metrics=metrics, dataset=dataset, teacher=teacher, schedule=schedule, license=license,
    )  # fmt: skip
    if not binary_layers(model):
        raise ValueError(
            "the model has no binary layers (autobin.nn.BinaryLayer); binarize it with "
            "autobin.binarize(model, recipe) before publishing"
        )
    if check_rebuild and (rebuild is not None or can_rebuild(config)):
        check_rebuild_matches(model, config, rebuild or default_rebuild(config))
    check_zoo_dir(zoo)
    zoo.mkdir(parents=True, exist_ok=True)
    clean_interrupted(zoo)
    _check_free(zoo, name, overwrite)
    tmp = Path(tempfile.mkdtemp(dir=zoo, prefix=f"{PUBLISH_PREFIX}{name}-"))
    try:
        write_owner(tmp)
        files = _write_entry(model, config, tmp, float_dtype=float_dtype, keep_latent=keep_latent)
        return _commit_entry(zoo, name, tmp, files, config, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_free(zoo: Path, name: str, overwrite: bool) -> None:
    if overwrite:
        return
    if name in read_index(zoo)["models"]:
        raise FileExistsError(
            f"zoo {zoo} already has a model named {name!r}; pass overwrite=True to replace it"
        )
    if (zoo / name).exists():
        raise FileExistsError(
            f"{zoo / name} exists but is not in {zoo / 'index.json'} (left over?); remove it or "
            "pass overwrite=True"
        )


def _float32_bytes(model: nn.Module) -> int:
    """Tensor bytes of ``model``'s full state dict stored as float32 (latent weights included)."""
    total = 0
    for t in model.state_dict().values():
        size = 4 if t.is_floating_point() else t.element_size()
        total += t.numel() * size
    return total


def _write_entry(
    model: nn.Module, config: dict[str, Any], tmp: Path, *, float_dtype: str, keep_latent: bool
) -> dict[str, str]:
    """Write the entry's files into ``tmp``; return ``{filename: sha256}`` of all of them."""
    summary = save_packed(
        model, tmp / WEIGHTS_FILE, float_dtype=float_dtype, keep_latent=keep_latent
    )
    config["weights"] = {
        "file": WEIGHTS_FILE,
        "float_dtype": float_dtype,
        "keep_latent": keep_latent,
        "bit_order": BIT_ORDER,
        **summary,
        "float32_bytes": _float32_bytes(model),
    }
    write_file_synced(tmp / CONFIG_FILE, dumps_json(config))
    write_file_synced(tmp / CARD_FILE, render_card(config).encode("utf-8"))
    files = {f: sha256_file(tmp / f) for f in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)}
    write_file_synced(tmp / CHECKSUMS_FILE, render_checksums(files))
    files[CHECKSUMS_FILE] = sha256_file(tmp / CHECKSUMS_FILE)
    (tmp / OWNER_FILE).unlink(missing_ok=True)  # the entry holds only its listed files
    fsync_dir(tmp)
    return files


def _commit_entry(
    zoo: Path,
    name: str,
    tmp: Path,
    files: dict[str, str],
    config: Mapping[str, Any],
    overwrite: bool,
) -> Path:
    """Move ``tmp`` to ``zoo/name`` and record it in the index; roll back on any failure."""
    target = zoo / name
    with index_lock(zoo):
        index = read_index(zoo)
        _check_free(zoo, name, overwrite)
        backup = None
        if target.exists():
            backup = Path(tempfile.mkdtemp(dir=zoo, prefix=f"{REPLACED_PREFIX}{name}-")) / name
            os.rename(target, backup)
        try:
            os.rename(tmp, target)
            fsync_dir(zoo)
            index["models"][name] = {
                "path": name,
                "files": files,
                "metrics": config["metrics"],
                "created": config["created"],
            }
            write_index(zoo, index)
        except BaseException:
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            if backup is not None:
                os.rename(backup, target)
            raise
        finally:
            if backup is not None:
                shutil.rmtree(backup.parent, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- runs
RUN_KEYS: tuple[str, ...] = (
    "arch",
    "arch_kwargs",
    "input_size",
    "recipe",
    "dataset",
    "teacher",
    "schedule",
)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: {what} not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooFormatError(f"{path}: cannot read {what} ({e})") from e


def _run_metrics(path: Path) -> dict[str, float | int]:
    data = _read_json(path, "the run's metrics")
    if not isinstance(data, dict):
        raise ZooFormatError(f"{path}: must hold a JSON object of metrics")
    numbers = {
        k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return check_metrics(numbers, str(path))


def publish_run(
    run_dir: str | os.PathLike[str],
    name: str,
    *,
    zoo_dir: str | os.PathLike[str] = "zoo",
    metrics: Mapping[str, float] | None = None,
    float_dtype: FloatDtype = "float32",
    keep_latent: bool = False,
    overwrite: bool = False,
    rebuild: Rebuild | None = None,
) -> Path:
    """Publish the best checkpoint of a finetune run directory.

    The run directory holds ``run.json`` (``{"arch", "arch_kwargs", "input_size", "recipe",
    "dataset", "teacher", "schedule"}``; ``input_size`` is the ``(C, H, W)`` the model was
    trained on), ``metrics.json`` (a JSON object; its numeric top-level entries
    become the metrics unless ``metrics`` is given) and ``best.pt`` (a torch checkpoint dict
    whose ``"model"`` is the binarized model's state dict, read with ``weights_only=True``).

    Returns:
        The entry directory.
    """
    run = Path(run_dir)
    spec = _read_json(run / "run.json", "the run description")
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str):
        raise ZooFormatError(f"{run / 'run.json'}: needs a string 'arch' (the timm name)")
    unknown = sorted(set(spec) - set(RUN_KEYS))
    if unknown:
        raise ZooFormatError(
            f"{run / 'run.json'}: unknown keys {unknown}; valid keys are {list(RUN_KEYS)}"
        )
    kwargs = spec.get("arch_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ZooFormatError(f"{run / 'run.json'}: 'arch_kwargs' must be an object")
    recipe = spec.get("recipe")
    if not isinstance(recipe, dict):
        raise ZooFormatError(f"{run / 'run.json'}: 'recipe' must be the recipe object")
    if metrics is None:
        metrics = _run_metrics(run / "metrics.json")
    ckpt_path = run / "best.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: the run's best checkpoint is missing")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Mapping):
        raise ZooFormatError(f"{ckpt_path}: expected a dict with a 'model' state dict")
    config = {
        "name": name,
        "architecture": {"library": "timm", "name": spec["arch"], "kwargs": kwargs},
        "recipe": recipe,
        "input_size": spec.get("input_size"),
    }
    model = (rebuild or family_rebuild)(config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ZooFormatError(
            f"{ckpt_path}: the checkpoint does not fit the model rebuilt from run.json ({e})"
        ) from e
    model.eval()
    return publish(
        model, name, metrics=metrics, zoo_dir=zoo_dir, arch=spec["arch"], arch_kwargs=kwargs,
        dataset=spec.get("dataset"), teacher=spec.get("teacher"), schedule=spec.get("schedule"),
        float_dtype=float_dtype, keep_latent=keep_latent, overwrite=overwrite, recipe=recipe,
        input_size=spec.get("input_size"), check_rebuild=False,
    )  # fmt: skip


__all__ = ["RUN_KEYS", "publish", "publish_run"]
