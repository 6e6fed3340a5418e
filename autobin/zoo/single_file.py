"""One-file binary checkpoints: what ``autobin binarize -o FILE`` writes and :func:`load` reads.

The file is the zoo's packed safetensors format (:mod:`autobin.zoo.format`: 1-bit weight signs,
per-channel binary sets, float tensors; nothing pickled) with two more metadata entries:

* ``autobin_config``: the entry config a zoo directory keeps in ``config.json`` (architecture
  and its ``timm.create_model`` arguments, input size, the embedded recipe and its sha256), so
  the file alone rebuilds the model;
* ``file_sha256``: sha256 of the whole file, checked before loading: the safetensors header
  (every tensor's name, dtype, shape and byte offsets, and the metadata, this entry left out)
  and the tensor bytes. Files written before it carry ``data_sha256`` (the tensor bytes alone,
  so swapped offsets went unnoticed); they are still read and checked as far as that goes.

By default the latent float weights are stored too (``keep_latent=True``): a freshly binarized
model is usually trained next, and its latent weights are the float model's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save as st_save
from torch import nn

from ..atomic import atomic_write
from ..quantizers.packing import BIT_ORDER
from .config import build_entry_config, validate_config
from .errors import ZooFormatError, ZooIntegrityError
from .format import (
    WEIGHTS_FILE,
    FloatDtype,
    binary_layers,
    check_float_dtype,
    packed_state,
    read_packed,
)
from .index import dumps_json
from .rebuild import Rebuild, can_rebuild, check_rebuild_matches, default_rebuild

CONFIG_KEY = "autobin_config"
DIGEST_KEY = "file_sha256"
LEGACY_DIGEST_KEY = "data_sha256"


def _data_digest(data: bytes) -> str:
    """sha256 of the tensor bytes of a serialized safetensors file (after its header)."""
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n :]).hexdigest()


def _file_digest(data: bytes) -> str:
    """sha256 of a serialized safetensors file: its header without ``DIGEST_KEY``, then its
    tensor bytes. The header is hashed as canonical JSON (sorted keys, no spaces), so adding
    the digest to the metadata does not change what it covers."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    (header.get("__metadata__") or {}).pop(DIGEST_KEY, None)
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(len(canonical).to_bytes(8, "little") + canonical)
    digest.update(data[8 + n :])
    return digest.hexdigest()


def check_free_file(path: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse a directory, and an existing file unless ``overwrite`` (nothing is written)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name, e.g. {path}/bnn.pt")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; nothing was written. Replace it with overwrite=True (CLI: "
            "--overwrite), or choose another file name"
        )


def save_file(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    input_size: list[int] | tuple[int, ...] | None = None,
    float_dtype: FloatDtype = "float32",
    keep_latent: bool = True,
    rebuild: Rebuild | None = None,
    check_rebuild: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a binarized model to one packed, self-describing file, atomically.

    Args:
        model: a binarized model (from :func:`autobin.binarize`).
        path: the file to write (any suffix; ``.safetensors`` is customary).
        arch, arch_kwargs, input_size: as for :func:`autobin.zoo.publish` (default: read
            from the model).
        float_dtype: storage dtype of the float parts.
        keep_latent: also store the latent float weights (default True: trainable on load).
        rebuild, check_rebuild: check, before writing, that the file can be loaded again.
        overwrite: replace ``path`` if it exists (default: refuse, as ``publish`` and
            ``finetune`` do).

    Returns:
        The path written.

    Raises:
        ValueError: the model has no binary layers, or cannot be rebuilt from its description.
        IsADirectoryError: ``path`` is a directory.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    check_free_file(path, overwrite)
    check_float_dtype(float_dtype)
    if not binary_layers(model):
        raise ValueError(
            "the model has no binary layers; binarize it with autobin.binarize(model) first"
        )
    config = build_entry_config(
        model, path.stem, arch=arch, arch_kwargs=arch_kwargs, recipe=None, input_size=input_size,
        metrics=None, dataset=None, teacher=None, schedule=None, license="apache-2.0",
    )  # fmt: skip
    if check_rebuild and (rebuild is not None or can_rebuild(config)):
        check_rebuild_matches(model, config, rebuild or default_rebuild(config))
    tensors, metadata = packed_state(model, float_dtype=float_dtype, keep_latent=keep_latent)
    config["weights"] = {
        "file": WEIGHTS_FILE,  # the tensors of this very file
        "float_dtype": float_dtype,
        "keep_latent": keep_latent,
        "bit_order": BIT_ORDER,
    }
    metadata[CONFIG_KEY] = dumps_json(config).decode("utf-8")
    digest = _file_digest(st_save(tensors, metadata=metadata))
    data = st_save(tensors, metadata={**metadata, DIGEST_KEY: digest})
    return atomic_write(path, lambda fh: fh.write(data))


def read_file_config(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any, Any]:
    """Read, checksum and validate a one-file checkpoint: ``(config, tensors, metadata)``.

    Raises:
        ZooFormatError: not an autobin packed file, or not a one-file checkpoint.
        ZooIntegrityError: the file (header or tensor bytes) does not match its recorded sha256.
    """
    path = Path(path)
    tensors, metadata = read_packed(path)
    key = DIGEST_KEY if DIGEST_KEY in metadata else LEGACY_DIGEST_KEY
    if CONFIG_KEY not in metadata or key not in metadata:
        raise ZooFormatError(
            f"{path}: a packed checkpoint without an embedded config (a zoo entry's "
            f"{WEIGHTS_FILE}?); load its entry directory, or pass rebuild= to build the model"
        )
    data = path.read_bytes()
    actual = _file_digest(data) if key == DIGEST_KEY else _data_digest(data)
    if actual != metadata[key]:
        what = "the file" if key == DIGEST_KEY else "the tensor data"
        raise ZooIntegrityError(
            f"{path}: sha256 of {what} is {actual}, the file records {metadata[key]}; the file "
            "is corrupt or was modified (write it again from the model)"
        )
    try:
        config = json.loads(metadata[CONFIG_KEY])
    except json.JSONDecodeError as e:
        raise ZooFormatError(f"{path}: the embedded config is not valid JSON ({e})") from e
    return validate_config(config, f"{path} (embedded config)"), tensors, metadata


__all__ = [
    "CONFIG_KEY",
    "DIGEST_KEY",
    "LEGACY_DIGEST_KEY",
    "check_free_file",
    "read_file_config",
    "save_file",
]
