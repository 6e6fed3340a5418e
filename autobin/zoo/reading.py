"""Reading a zoo: find an entry, verify it, show its config, list the zoo, load a model.

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
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..quantizers.packing import unpack_signs
from .config import CONFIG_FILE, read_config
from .errors import ModelNotFoundError, ZooIntegrityError
from .format import (
    ALPHA_KEY,
    BETA_KEY,
    SIGNS_KEY,
    WEIGHTS_FILE,
    load_packed_state,
    read_packed,
)
from .index import (
    CHECKSUMS_FILE,
    check_zoo_dir,
    parse_checksums,
    read_index,
    verify_files,
)
from .rebuild import Rebuild, default_rebuild
from .single_file import read_file_config

REQUIRED_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE)
#: Suffixes that make a name that is not in the index a (missing) file path.
FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


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
        if not (entry_dir / CHECKSUMS_FILE).is_file():
            raise ModelNotFoundError(
                f"{entry_dir} is a folder but not a zoo entry (it has no {CHECKSUMS_FILE}); give "
                "an entry folder (ZOO/NAME), an entry name with zoo_dir= / --zoo-dir, or a file "
                "written by `autobin binarize -o`"
            )
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
        if os.sep in key or "/" in key or Path(key).suffix in FILE_SUFFIXES:
            raise ModelNotFoundError(
                f"{key}: no such file or folder; give an existing file written by `autobin "
                "binarize -o`, an entry folder, or a zoo entry name"
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
        config = read_file_config(name)[0]
        return {"name": config["name"], "path": os.fspath(name), "files": {},
                "checked_against": f"{os.fspath(name)} (embedded sha256)"}  # fmt: skip
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


def load_file(
    path: str | os.PathLike[str],
    *,
    keep_latent: bool = False,
    rebuild: Rebuild | None = None,
    deploy: bool = False,
) -> nn.Module:
    """Load a one-file checkpoint written by :func:`save_file` (or ``autobin binarize -o``).

    The same as :func:`autobin.zoo.load` (and :func:`autobin.load`) given the file's path.

    Args:
        path: the file.
        keep_latent: restore the latent float weights and keep the model trainable (the file
            must hold them); default freezes every binary layer with its packed binary weight.
        rebuild: builds the binarized model from the embedded config (default
            :func:`autobin.zoo.default_rebuild`).
        deploy: return the inference-only packed model.

    Returns:
        The model in eval mode, with the embedded config as ``model.autobin_zoo_config``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(2, "no such file", os.fspath(path))
    return load(path, keep_latent=keep_latent, rebuild=rebuild, deploy=deploy)


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


__all__ = ["REQUIRED_FILES", "list_models", "load", "load_file", "show", "verify"]
