"""Publish, load, list and verify binarized models in a zoo directory.

A zoo is a directory::

    zoo/
      index.json                 # the trusted record: entries with sha256 of every file
      <name>/
        model.safetensors        # packed 1-bit checkpoint (autobin.zoo.format)
        config.json              # architecture, embedded recipe + sha256, metrics, report
        README.md                # Hugging Face style model card
        SHA256SUMS               # checksums of the three files above

:func:`load` takes an entry name (looked up in ``index.json``, which is checked first) or an
entry directory path; by path the files are checked against the entry's ``SHA256SUMS``, which
catches corruption and truncation but not deliberate tampering (load by name from a trusted
index for that). Loading rebuilds the model (``timm.create_model`` + ``autobin.binarize`` with
the embedded recipe), loads the float tensors and freezes every binary layer with its packed
binary weight, so the loaded model's eval outputs equal the published model's bit for bit.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import fsync_dir
from ..errors import BinarizeError
from ..graph import binarize
from ..quantizers.packing import BIT_ORDER, unpack_signs
from ..recipes import Recipe
from .card import render_card
from .config import (
    CARD_FILE,
    CONFIG_FILE,
    CONFIG_FORMAT,
    CONFIG_VERSION,
    check_json_value,
    check_metrics,
    read_config,
    recipe_to_dict,
)
from .errors import ModelNotFoundError, ZooError, ZooFormatError, ZooIntegrityError
from .format import (
    ALPHA_KEY,
    BETA_KEY,
    SIGNS_KEY,
    WEIGHTS_FILE,
    FloatDtype,
    binary_layers,
    check_float_dtype,
    load_packed_state,
    read_packed,
    save_packed,
)
from .index import (
    CHECKSUMS_FILE,
    check_name,
    check_zoo_dir,
    dumps_json,
    index_lock,
    parse_checksums,
    read_index,
    render_checksums,
    sha256_file,
    verify_files,
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

Rebuild = Callable[[Mapping[str, Any]], nn.Module]
"""Builds the binarized, not yet loaded model described by an entry config."""

_REBUILDS: dict[str, Rebuild] = {}
REBUILD_PLUGINS: dict[str, str] = {"mmdet": "autobin.integrations.mmdet"}
"""Architecture libraries rebuilt by an integration, and the module that registers it on import
(:func:`register_rebuild`); the zoo imports it by name the first time such an entry loads."""

REQUIRED_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE)


# --------------------------------------------------------------------------- rebuilding
def timm_rebuild(config: Mapping[str, Any]) -> nn.Module:
    """Default :data:`Rebuild`: ``autobin.binarize(timm.create_model(...), recipe)``.

    The example input of the graph pass is a seeded random batch of the entry's
    ``input_size`` (default: the timm model's ``pretrained_cfg['input_size']``).

    Raises:
        ZooError: the entry embeds no recipe (pass your own ``rebuild``).
    """
    arch = config["architecture"]
    if arch["library"] != "timm":
        raise ZooFormatError(f"cannot rebuild architecture library {arch['library']!r}")
    if config.get("recipe") is None:
        raise ZooError(
            f"entry {config.get('name')!r} embeds no recipe, so it cannot be rebuilt "
            "automatically; pass rebuild=<function(config) -> binarized nn.Module>"
        )
    import timm

    if not timm.is_model(arch["name"]):
        raise ZooFormatError(
            f"entry {config.get('name')!r}: {arch['name']!r} is not a timm architecture (see "
            "timm.list_models()); for a model built by hand pass rebuild=<function(config) -> "
            "binarized nn.Module>"
        )
    model = timm.create_model(arch["name"], pretrained=False, **arch["kwargs"])
    example_inputs = None
    if config.get("input_size"):
        gen = torch.Generator().manual_seed(0)
        example_inputs = (torch.randn((2, *config["input_size"]), generator=gen),)
    recipe = Recipe.from_dict(config["recipe"], source=f"config.json of {config.get('name')!r}")
    return binarize(model, recipe, example_inputs=example_inputs)


def register_rebuild(library: str, rebuild: Rebuild) -> None:
    """Rebuild entries whose ``architecture.library`` is ``library`` with ``rebuild``."""
    _REBUILDS[library] = rebuild


def default_rebuild(config: Mapping[str, Any]) -> Rebuild:
    """The rebuild for an entry's architecture library (timm, or an integration's)."""
    library = config["architecture"]["library"]
    if library == "timm":
        return timm_rebuild
    if library not in _REBUILDS and library in REBUILD_PLUGINS:
        try:
            importlib.import_module(REBUILD_PLUGINS[library])
        except ImportError as exc:
            raise ZooError(
                f"entry {config.get('name')!r} is an {library} model; rebuilding it needs "
                f"{REBUILD_PLUGINS[library]} ({exc}); install it with: pip install "
                f"'autobin[{library}]'"
            ) from exc
    if library not in _REBUILDS:
        raise ZooFormatError(f"cannot rebuild architecture library {library!r}")
    return _REBUILDS[library]


def _default_rebuild_available(config: Mapping[str, Any]) -> bool:
    return config.get("recipe") is not None and (
        config["architecture"]["library"] in ("timm", *REBUILD_PLUGINS)
    )


def _check_rebuild(model: nn.Module, config: Mapping[str, Any], rebuild: Rebuild) -> None:
    """Rebuild from ``config`` and check it has ``model``'s state keys, shapes, binary layers."""
    hint = (
        "pass the timm create_model arguments the model was made with as arch_kwargs= (e.g. "
        "{'num_classes': 10, 'in_chans': 1}) and the input size it takes as input_size="
    )
    try:
        rebuilt = rebuild(config)
    except (RuntimeError, BinarizeError) as e:  # e.g. an input the rebuilt model cannot take
        raise ValueError(
            f"the model cannot be rebuilt from architecture {config['architecture']} with input "
            f"size {config.get('input_size')} and its recipe ({e}); {hint}"
        ) from e
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    layers_differ = set(binary_layers(model)) != set(binary_layers(rebuilt))
    if diff or layers_differ:
        shown = [(k, ours.get(k), theirs.get(k)) for k in diff[:5]]
        raise ValueError(
            f"the model cannot be rebuilt from architecture {config['architecture']} and its "
            f"recipe: state entries differ (key, model shape, rebuilt shape): {shown}"
            f"{' ...' if len(diff) > 5 else ''}; {hint}"
        )


# --------------------------------------------------------------------------- publishing
def _arch_from_model(model: nn.Module) -> tuple[str | None, dict[str, Any]]:
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("architecture"), str):
            return cfg["architecture"], dict(cfg)
    return None, {}


def _binarized_input_shape(model: nn.Module) -> list[int] | None:
    """``(C, H, W)`` of the example input the model was binarized with, if recorded."""
    shape = getattr(getattr(model, "autobin_report", None), "input_shape", None)
    return [int(d) for d in shape] if shape is not None and len(shape) == 3 else None


def _infer_kwargs(model: nn.Module, cfg: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        num_classes = cfg.get("num_classes")
    if isinstance(num_classes, int):
        kwargs["num_classes"] = num_classes
    shape, default = _binarized_input_shape(model), cfg.get("input_size")
    if shape is not None and isinstance(default, (list, tuple)) and shape[0] != default[0]:
        kwargs["in_chans"] = shape[0]  # binarized for other input channels than timm's default
    return kwargs


def _report_totals(model: nn.Module) -> dict[str, Any] | None:
    report = getattr(model, "autobin_report", None)
    if report is None:
        return None
    data = report.to_dict() if hasattr(report, "to_dict") else report
    totals = data.get("totals") if isinstance(data, Mapping) else None
    return {"totals": check_json_value(totals, "autobin_report totals")} if totals else None


def _float32_bytes(model: nn.Module) -> int:
    """Tensor bytes of ``model``'s full state dict stored as float32 (latent weights included)."""
    total = 0
    for t in model.state_dict().values():
        size = 4 if t.is_floating_point() else t.element_size()
        total += t.numel() * size
    return total


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


def _build_config(
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
    embedded = getattr(model, "autobin_architecture", None)
    if arch is None and isinstance(embedded, Mapping):
        architecture = check_json_value(dict(embedded), "autobin_architecture")
        if recipe is None:
            recipe = getattr(model, "autobin_recipe", None)
        recipe_dict, recipe_sha = recipe_to_dict(recipe) if recipe is not None else (None, None)
        if input_size is None:
            input_size = _binarized_input_shape(model)
        return _config_record(name, architecture, input_size, recipe_dict, recipe_sha, metrics,
                              dataset, teacher, schedule, license, model)  # fmt: skip
    cfg_arch, cfg = _arch_from_model(model)
    if arch is None:
        arch = cfg_arch
    if not isinstance(arch, str) or not arch:
        raise ValueError(
            "publish needs the timm architecture name: the model has no pretrained_cfg / "
            "default_cfg 'architecture' field, so pass arch= (e.g. arch='resnet18')"
        )
    if arch_kwargs is None:
        arch_kwargs = _infer_kwargs(model, cfg) if arch == cfg_arch else {}
    if recipe is None:
        recipe = getattr(model, "autobin_recipe", None)
    recipe_dict, recipe_sha = recipe_to_dict(recipe) if recipe is not None else (None, None)
    if input_size is None:
        input_size = _binarized_input_shape(model) or _default_input_size(cfg, arch_kwargs)
    architecture = {
        "library": "timm",
        "name": arch,
        "kwargs": check_json_value(dict(arch_kwargs), "arch_kwargs"),
    }
    return _config_record(name, architecture, input_size, recipe_dict, recipe_sha, metrics,
                          dataset, teacher, schedule, license, model)  # fmt: skip


def _config_record(
    name, architecture, input_size, recipe_dict, recipe_sha, metrics, dataset, teacher, schedule,
    license, model,
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
        "report": _report_totals(model),
    }


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
        arch: timm architecture name; default: ``model.pretrained_cfg["architecture"]``.
        arch_kwargs: ``timm.create_model`` arguments (``num_classes``, ``in_chans``, ...);
            default: ``{"num_classes": model.num_classes}`` when ``arch`` came from the model.
        dataset, teacher, schedule: JSON data describing the training (stored and shown).
        float_dtype: ``"float32"`` or ``"float16"``: storage of the float parts.
        keep_latent: also store the latent float weights of the binary layers, so
            ``load(..., keep_latent=True)`` gives a trainable model.
        overwrite: replace an existing entry of the same name.
        recipe: the :class:`autobin.recipes.Recipe` (or its dict); default
            ``model.autobin_recipe``.
        input_size: ``(C, H, W)``, also the example input shape when rebuilding; default
            ``model.pretrained_cfg["input_size"]`` with ``in_chans``/``img_size`` from
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
    config = _build_config(
        model, name, arch=arch, arch_kwargs=arch_kwargs, recipe=recipe, input_size=input_size,
        metrics=metrics, dataset=dataset, teacher=teacher, schedule=schedule, license=license,
    )  # fmt: skip
    if not binary_layers(model):
        raise ValueError(
            "the model has no binary layers (autobin.nn.BinaryLayer); binarize it with "
            "autobin.binarize(model, recipe) before publishing"
        )
    if check_rebuild and (rebuild is not None or _default_rebuild_available(config)):
        _check_rebuild(model, config, rebuild or default_rebuild(config))
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


# --------------------------------------------------------------------------- loading
def _resolve(name_or_path: str | os.PathLike[str], zoo_dir: str | os.PathLike[str]):
    """``(entry_dir, {filename: sha256}, source_of_hashes)`` for a name or a directory path."""
    zoo = check_zoo_dir(zoo_dir)
    key = os.fspath(name_or_path)
    index = read_index(zoo) if (zoo / "index.json").exists() else None
    if index is not None and key in index["models"]:
        entry = index["models"][key]
        files = dict(entry["files"])
        source = f"{zoo / 'index.json'} (entry {key!r})"
        entry_dir = zoo / entry["path"]
    elif Path(key).is_dir():
        entry_dir = Path(key)
        files = parse_checksums(entry_dir / CHECKSUMS_FILE)
        source = str(entry_dir / CHECKSUMS_FILE)
    else:
        known = sorted(index["models"]) if index is not None else []
        if (zoo / key / CHECKSUMS_FILE).is_file():
            raise ModelNotFoundError(
                f"{zoo / key} is an entry folder but {zoo / 'index.json'} does not list it (the "
                "index was deleted or is stale); rebuild the index from the entries' checksums "
                f"with `autobin zoo --zoo-dir {zoo} reindex` (autobin.zoo.rebuild_index)"
            )
        raise ModelNotFoundError(
            f"no model {key!r} in the zoo at '{zoo}' (known: {known[:20]}) and no such "
            "directory; list the zoo with `autobin zoo list` (autobin.zoo.list_models()), or "
            "point at another zoo with --zoo-dir / zoo_dir="
        )
    for required in REQUIRED_FILES:
        if required not in files:
            raise ZooIntegrityError(f"{source} lists no sha256 for {required!r}")
    return entry_dir, files, source


def verify(name: str | os.PathLike[str], zoo_dir: str | os.PathLike[str] = "zoo") -> dict:
    """Check an entry without building the model: sha256 of every file, config and format.

    Args:
        name: entry name in the index, or an entry directory path (then checked against its
            ``SHA256SUMS``).
        zoo_dir: the zoo directory.

    Returns:
        ``{"name", "path", "files": {filename: sha256}, "checked_against"}``.

    Raises:
        ModelNotFoundError: unknown name.
        ZooIntegrityError: a file is missing or its sha256 differs (names the file).
        ZooFormatError: ``config.json`` or ``model.safetensors`` is invalid.
    """
    if Path(os.fspath(name)).is_file():  # a one-file checkpoint: its data sha256 and config
        from .single_file import read_file_config

        config = read_file_config(name)[0]
        return {"name": config["name"], "path": os.fspath(name), "files": {},
                "checked_against": f"{os.fspath(name)} (embedded data_sha256)"}  # fmt: skip
    entry_dir, files, source = _resolve(name, zoo_dir)
    verify_files(entry_dir, files, source)
    config = read_config(entry_dir / CONFIG_FILE)
    read_packed(entry_dir / WEIGHTS_FILE)
    return {
        "name": config["name"],
        "path": str(entry_dir),
        "files": files,
        "checked_against": source,
    }


def show(name: str | os.PathLike[str], zoo_dir: str | os.PathLike[str] = "zoo") -> dict:
    """The config dict of an entry (its ``config.json``, sha256-checked and validated)."""
    entry_dir, files, source = _resolve(name, zoo_dir)
    verify_files(entry_dir, {CONFIG_FILE: files[CONFIG_FILE]}, source)
    return read_config(entry_dir / CONFIG_FILE)


def list_models(zoo_dir: str | os.PathLike[str] = "zoo") -> list[dict[str, Any]]:
    """The entries of the zoo index, sorted by name: ``{"name", "path", "metrics", "created"}``.

    An absent zoo directory or index is an empty zoo.
    """
    zoo = Path(zoo_dir)
    models = read_index(zoo)["models"]
    return [
        {
            "name": n,
            "path": str(zoo / e["path"]),
            "metrics": e.get("metrics", {}),
            "created": e.get("created"),
        }
        for n, e in sorted(models.items())
    ]


def load(
    name_or_path: str | os.PathLike[str],
    *,
    zoo_dir: str | os.PathLike[str] = "zoo",
    keep_latent: bool = False,
    verify: bool = True,
    rebuild: Rebuild | None = None,
    deploy: bool = False,
) -> nn.Module:
    """Load a zoo entry as an eval-mode model whose outputs equal the published model's.

    Args:
        name_or_path: entry name in ``zoo_dir/index.json`` (checked first), an entry
            directory (its files are then checked against its ``SHA256SUMS``), or a one-file
            checkpoint written by ``autobin binarize -o`` (:mod:`autobin.zoo.single_file`).
        zoo_dir: the zoo directory.
        keep_latent: restore the latent float weights (the entry must have been published
            with ``keep_latent=True``) and keep the binary layers trainable; default freezes
            every binary layer with its packed binary weight.
        verify: check every file's sha256 before reading anything (default True).
        rebuild: builds the binarized model from the entry config; default
            :func:`default_rebuild` (timm: ``timm.create_model`` + ``autobin.binarize``).
        deploy: return the inference-only packed model (:func:`autobin.deploy`), its binary
            layers packed straight from the stored sign bits and binary sets.

    Returns:
        The model, in eval mode, with the entry config as ``model.autobin_zoo_config``
        (a :class:`autobin.deploy.DeployedModel` with ``deploy=True``).

    Raises:
        ModelNotFoundError, ZooIntegrityError, ZooFormatError: see :func:`verify`.
    """
    if Path(os.fspath(name_or_path)).is_file():  # a one-file checkpoint (autobin binarize -o)
        from .single_file import read_file_config

        config, tensors, metadata = read_file_config(name_or_path)
        source = os.fspath(name_or_path)
    else:
        entry_dir, files, hashes = _resolve(name_or_path, zoo_dir)
        if verify:
            verify_files(entry_dir, files, hashes)
        config = read_config(entry_dir / CONFIG_FILE)
        tensors, metadata = read_packed(entry_dir / WEIGHTS_FILE)
        source = str(entry_dir / WEIGHTS_FILE)
    model = (rebuild or default_rebuild(config))(config)
    load_packed_state(model, tensors, metadata, keep_latent=keep_latent, source=source)
    model.eval()
    if deploy:
        if keep_latent:
            raise ValueError("deploy=True makes an inference-only model; drop keep_latent=True")
        model = _deployed(model, tensors, metadata)
    with contextlib.suppress(AttributeError, TypeError):
        model.autobin_zoo_config = config
    return model


def _deployed(model: nn.Module, tensors: Mapping[str, torch.Tensor], metadata) -> nn.Module:
    """The packed model, its binary layers built from the checkpoint's sign bits and sets."""
    from .. import deploy as deploy_package

    infos = json.loads(metadata["binary_layers"])
    stored = {}
    for path, info in infos.items():
        pre = f"{path}." if path else ""
        signs = unpack_signs(tensors[pre + SIGNS_KEY], info["shape"])
        stored[path] = (signs, tensors[pre + ALPHA_KEY], tensors[pre + BETA_KEY])
    return deploy_package.deploy(model, weight_signs=stored)


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
    model = (rebuild or timm_rebuild)(config)
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


__all__ = [
    "Rebuild",
    "default_rebuild",
    "list_models",
    "load",
    "publish",
    "publish_run",
    "register_rebuild",
    "show",
    "timm_rebuild",
    "verify",
]
