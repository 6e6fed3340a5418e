"""The packed 1-bit checkpoint format: a model's state <-> one safetensors file.

File ``model.safetensors`` holds only tensors (nothing pickled, loading runs no code).

Tensor naming, for every binary layer (an :class:`autobin.nn.BinaryLayer`) at module path
``P`` (``named_modules()`` name, e.g. ``layer1.0.conv1``):

==========================  ========  ==========================================================
key                         dtype     content
==========================  ========  ==========================================================
``P.weight.signs_packed``   uint8     weight signs, 8 per byte (:mod:`autobin.quantizers.packing`:
                                      row-major, LSB first, zero-padded last byte)
``P.weight.alpha_w``        float32   per-output-channel half-distance, shape ``(O,)``
``P.weight.beta_w``         float32   per-output-channel center, shape ``(O,)``
``P.weight``                any       latent float weight, only when published ``keep_latent``
==========================  ========  ==========================================================

Every other entry of ``model.state_dict()`` (biases, ``act_alpha``/``act_beta``, Maxout slopes,
BatchNorm statistics, every float layer) is stored under its own state-dict key. A module can
never have a child named ``weight`` next to a ``weight`` parameter, so the three binary keys
cannot collide with a state-dict key.

``alpha_w``/``beta_w`` are always float32 (float64 for a float64 model): with the signs they
define the effective binary weight ``Wb = alpha_w * (2 * signs - 1) + beta_w`` bit-exactly.
With ``float_dtype="float16"`` every other floating-point tensor is stored as float16, except
the binary layers' activation scalars ``act_alpha``/``act_beta`` (two numbers per layer that
set the binarization thresholds, kept float32). Integer tensors keep their dtype.

Safetensors metadata (string to string): ``format`` (``"autobin.packed"``), ``format_version``
(``"1"``), ``bit_order`` (``"little"``), ``float_dtype``, ``keep_latent`` (``"true"`` /
``"false"``) and ``binary_layers``: JSON mapping each ``P`` to ``{"shape": [...], "dtype":
"float32", "method": "adabin", "act_form": "paper", "eps": 1e-05, "binarize_activations":
true}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import ChoiceError, check_choice
from ..nn import BinaryLayer, method_spec
from ..quantizers.packing import BIT_ORDER, pack_signs, packed_nbytes, unpack_signs
from .errors import ZooFormatError

FloatDtype = Literal["float32", "float16"]
#: Storage dtypes of the float parts (the binary sets stay float32).
FLOAT_DTYPES: dict[str, str] = {
    "float32": "full precision",
    "float16": "half the bytes; values beyond float16 range are refused",
}
FORMAT_NAME = "autobin.packed"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"

SIGNS_KEY = "weight.signs_packed"
ALPHA_KEY = "weight.alpha_w"
BETA_KEY = "weight.beta_w"


def check_float_dtype(float_dtype: str) -> str:
    """Return ``float_dtype`` if it is a supported storage dtype, else raise a ChoiceError."""
    return check_choice(float_dtype, FLOAT_DTYPES, "float_dtype")


def binary_layers(model: nn.Module) -> dict[str, BinaryLayer]:
    """Every :class:`~autobin.nn.BinaryLayer` of ``model`` by module path, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, BinaryLayer)}


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


def _set_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if weight_dtype == torch.float64 else torch.float32


def _layer_info(layer: BinaryLayer) -> dict[str, Any]:
    return {
        "shape": list(layer.weight.shape),
        "dtype": str(layer.weight.dtype).removeprefix("torch."),
        "method": layer.method,
        "act_form": layer.act_form,
        "eps": layer.eps,
        "binarize_activations": layer.binarize_activations,
    }


def packed_state(
    model: nn.Module, *, float_dtype: FloatDtype = "float32", keep_latent: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``model``'s packed checkpoint (see the module docstring).

    Args:
        model: any module; its :class:`~autobin.nn.BinaryLayer` weights are stored packed.
        float_dtype: storage dtype of the floating-point tensors other than the binary sets.
        keep_latent: also store the binary layers' latent float weights (for further training).

    Returns:
        ``(tensors, metadata)``, ready for ``safetensors.torch.save``.

    Raises:
        ValueError: a binary layer has weight binarization switched off (its weight is float, so
            it has no 1-bit form), or ``keep_latent`` is asked for a frozen layer.
    """
    check_float_dtype(float_dtype)
    layers = binary_layers(model)
    store_dtype = torch.float16 if float_dtype == "float16" else None
    tensors: dict[str, torch.Tensor] = {}
    infos: dict[str, dict[str, Any]] = {}
    keep_float32: set[str] = set()
    for path, layer in layers.items():
        if not layer.binarize_weights and not layer.frozen:
            raise ValueError(
                f"binary layer {path!r} has binarize_weights=False (a two-step 'step 1' model): "
                "its weight is float and has no 1-bit form; publish the model after weight "
                "binarization is switched on"
            )
        if keep_latent and layer.frozen:
            raise ValueError(
                f"keep_latent=True but binary layer {path!r} is frozen: its latent float weight "
                "is gone; publish with keep_latent=False"
            )
        pre = _prefix(path)
        alpha, beta = layer.weight_binary_set()
        sdt = _set_dtype(layer.weight.dtype)
        tensors[f"{pre}{SIGNS_KEY}"] = pack_signs(layer.weight_signs().cpu())
        tensors[f"{pre}{ALPHA_KEY}"] = alpha.detach().to("cpu", sdt).contiguous()
        tensors[f"{pre}{BETA_KEY}"] = beta.detach().to("cpu", sdt).contiguous()
        infos[path] = _layer_info(layer)
        keep_float32.update(f"{pre}{name}" for name in layer.scalar_params)
    latent_keys = {f"{_prefix(p)}weight" for p in layers}
    for key, value in model.state_dict().items():
        if key in latent_keys and not keep_latent:
            continue
        t = value.detach().to("cpu")
        if store_dtype is not None and t.is_floating_point() and key not in keep_float32:
            t = _to_half(key, t)
        # clone: tied/shared tensors must be saved as separate storages.
        tensors[key] = t.clone().contiguous()
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "bit_order": BIT_ORDER,
        "float_dtype": float_dtype,
        "keep_latent": "true" if keep_latent else "false",
        "binary_layers": json.dumps(infos, sort_keys=True),
    }
    return tensors, metadata


def _to_half(key: str, t: torch.Tensor) -> torch.Tensor:
    half = t.to(torch.float16)
    if (torch.isinf(half) & torch.isfinite(t)).any():
        raise ValueError(
            f"tensor {key!r} has values beyond the float16 range (max |x| = "
            f"{t.abs().max().item():.4g} > 65504); publish with float_dtype='float32'"
        )
    return half


def save_packed(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    float_dtype: FloatDtype = "float32",
    keep_latent: bool = False,
) -> dict[str, Any]:
    """Write ``model``'s packed checkpoint to ``path`` and fsync it.

    Returns:
        A summary: ``{"file_bytes", "binary_layers", "sign_bytes", "binary_params"}``.
    """
    tensors, metadata = packed_state(model, float_dtype=float_dtype, keep_latent=keep_latent)
    data = st_save(tensors, metadata=metadata)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    infos = json.loads(metadata["binary_layers"])
    numels = [_numel(info["shape"]) for info in infos.values()]
    return {
        "file_bytes": len(data),
        "binary_layers": len(infos),
        "binary_params": sum(numels),
        "sign_bytes": sum(packed_nbytes(n) for n in numels),
    }


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def read_packed(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a packed checkpoint's tensors and metadata; check the format tag and version.

    Raises:
        ZooFormatError: the file is unreadable, not safetensors, or not an autobin packed
            checkpoint of a supported version (the message names the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ZooFormatError(f"{path}: cannot read the packed checkpoint ({e})") from e
    metadata = _read_metadata(path, data)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ZooFormatError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT_NAME:
        raise ZooFormatError(
            f"{path}: safetensors metadata 'format' is {metadata.get('format')!r}, expected "
            f"{FORMAT_NAME!r}; this is not an autobin packed checkpoint"
        )
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ZooFormatError(
            f"{path}: packed format version {version!r} is not supported by this autobin "
            f"(supports {FORMAT_VERSION}); upgrade autobin to load it"
        )
    if metadata.get("bit_order") != BIT_ORDER:
        raise ZooFormatError(
            f"{path}: bit_order {metadata.get('bit_order')!r} is not supported (only {BIT_ORDER!r})"
        )
    for key in ("float_dtype", "keep_latent", "binary_layers"):
        if key not in metadata:
            raise ZooFormatError(f"{path}: safetensors metadata lacks the key {key!r}")
    try:
        infos = json.loads(metadata["binary_layers"])
    except json.JSONDecodeError as e:
        raise ZooFormatError(f"{path}: metadata 'binary_layers' is not valid JSON ({e})") from e
    if not isinstance(infos, dict):
        raise ZooFormatError(f"{path}: metadata 'binary_layers' must be a JSON object")
    return tensors, metadata


WHAT_LOADS = (
    "autobin.load reads the files `autobin binarize -o` and autobin.zoo.save_file write, zoo "
    "entry folders and zoo entry names"
)


def _not_safetensors(data: bytes) -> str:
    """What a file that is not safetensors seems to be, in words."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        return (
            "a PyTorch checkpoint (torch.save), not an autobin file (a training run's best.pt "
            "is published with autobin.zoo.publish_run or `autobin zoo publish`)"
        )
    return "not a safetensors file (no JSON header after the 8-byte length)"


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    """Parse the safetensors header (8-byte little-endian length, then JSON) without torch."""
    if len(data) < 8:
        raise ZooFormatError(f"{path}: file is {len(data)} bytes, too short for safetensors")
    n = int.from_bytes(data[:8], "little")
    if data[8:9] != b"{":
        raise ZooFormatError(f"{path}: {_not_safetensors(data)}; {WHAT_LOADS}")
    if n > len(data) - 8:
        raise ZooFormatError(
            f"{path}: safetensors header claims {n} bytes but the file has {len(data) - 8} "
            "after the length field (truncated file?)"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooFormatError(f"{path}: safetensors header is not valid JSON ({e})") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ZooFormatError(
            f"{path}: a safetensors file without autobin's metadata (not written by autobin, "
            f"e.g. a float model's weights); {WHAT_LOADS}"
        )
    return {str(k): str(v) for k, v in meta.items()}


def load_packed_state(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    *,
    keep_latent: bool = False,
    source: str = WEIGHTS_FILE,
) -> None:
    """Load a packed checkpoint into a freshly built ``model`` with the same structure.

    Float tensors are loaded with ``load_state_dict`` (cast to the model's dtypes); each binary
    layer then gets ``set_binary_weight(unpack(signs), alpha_w, beta_w)`` and is frozen, unless
    ``keep_latent`` is set, in which case the stored latent weights are loaded and the layers
    stay trainable.

    Args:
        model: the rebuilt (binarized, not frozen) model.
        tensors, metadata: from :func:`read_packed`.
        keep_latent: restore latent float weights instead of freezing.
        source: file name used in error messages.

    Raises:
        ZooFormatError: the checkpoint and the model do not match (missing/unexpected tensors,
            shape or method mismatch, bad binary set), or ``keep_latent`` was asked of a
            checkpoint published without latent weights.
    """
    infos: dict[str, dict[str, Any]] = json.loads(metadata["binary_layers"])
    has_latent = metadata.get("keep_latent") == "true"
    if keep_latent and not has_latent:
        raise ZooFormatError(
            f"{source}: keep_latent=True but this checkpoint was published without latent "
            "weights (publish with keep_latent=True to get a trainable checkpoint); load with "
            "keep_latent=False for inference"
        )
    layers = binary_layers(model)
    _check_layer_sets(layers, infos, source)
    binary_keys: set[str] = set()
    for path in layers:
        binary_keys.update(_prefix(path) + k for k in (SIGNS_KEY, ALPHA_KEY, BETA_KEY))
    latent_keys = {f"{_prefix(p)}weight" for p in layers}
    model_state = model.state_dict()
    expected = (set(model_state) - latent_keys) | binary_keys
    if has_latent:
        expected |= latent_keys
    _check_keys(set(tensors), expected, source)
    state = {}
    for key, ref in model_state.items():
        if key in latent_keys and not keep_latent:
            continue
        t = tensors[key]
        if tuple(t.shape) != tuple(ref.shape):
            raise ZooFormatError(
                f"{source}: tensor {key!r} has shape {tuple(t.shape)} but the rebuilt model "
                f"expects {tuple(ref.shape)}"
            )
        state[key] = t.to(ref.dtype)
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - (set() if keep_latent else latent_keys)
    if missing or result.unexpected_keys:
        raise ZooFormatError(
            f"{source}: state mismatch, missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(result.unexpected_keys)[:5]}"
        )
    for path, layer in layers.items():
        layer.binarize_activations = bool(infos[path].get("binarize_activations", True))
        if keep_latent:
            continue
        pre = _prefix(path)
        signs = unpack_signs(tensors[pre + SIGNS_KEY], infos[path]["shape"])
        alpha, beta = tensors[pre + ALPHA_KEY], tensors[pre + BETA_KEY]
        _check_binary_set(path, alpha, beta, int(layer.weight.shape[0]), source)
        layer.set_binary_weight(signs, alpha, beta)


def _check_layer_sets(
    layers: Mapping[str, BinaryLayer], infos: Mapping[str, dict[str, Any]], source: str
) -> None:
    extra, missing = sorted(set(infos) - set(layers)), sorted(set(layers) - set(infos))
    if extra or missing:
        raise ZooFormatError(
            f"{source}: the rebuilt model's binary layers differ from the checkpoint's: "
            f"only in the checkpoint {extra[:5]}, only in the model {missing[:5]}; the model "
            "was rebuilt with another architecture or recipe"
        )
    for path, layer in layers.items():
        info = infos[path]
        try:
            method_spec(info.get("method", layer.method))
        except ChoiceError as err:
            raise ZooFormatError(f"{source}: binary layer {path!r}: {err}") from None
        stored = info.get("shape")
        if not isinstance(stored, list) or tuple(stored) != tuple(layer.weight.shape):
            raise ZooFormatError(
                f"{source}: binary layer {path!r} has weight shape {stored} in the checkpoint "
                f"but {tuple(layer.weight.shape)} in the rebuilt model"
            )
        for attr in ("method", "act_form", "eps"):
            if attr in info and info[attr] != getattr(layer, attr):
                raise ZooFormatError(
                    f"{source}: binary layer {path!r} was published with {attr}="
                    f"{info[attr]!r} but the rebuilt layer has {getattr(layer, attr)!r}; "
                    "the recipe used to rebuild differs from the published one"
                )


def _check_keys(found: set[str], expected: set[str], source: str) -> None:
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing or extra:
        raise ZooFormatError(
            f"{source}: tensors do not match the rebuilt model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}"
        )


def _check_binary_set(
    path: str, alpha: torch.Tensor, beta: torch.Tensor, out: int, source: str
) -> None:
    for name, t in (("alpha_w", alpha), ("beta_w", beta)):
        if t.dtype not in (torch.float32, torch.float64) or tuple(t.shape) != (out,):
            raise ZooFormatError(
                f"{source}: {_prefix(path)}weight.{name} must be float32 of shape ({out},), got "
                f"{t.dtype} {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ZooFormatError(f"{source}: {_prefix(path)}weight.{name} has non-finite values")
    if (alpha < 0).any():
        raise ZooFormatError(f"{source}: {_prefix(path)}weight.alpha_w has negative half-distances")


__all__ = [
    "ALPHA_KEY",
    "BETA_KEY",
    "FLOAT_DTYPES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SIGNS_KEY",
    "WEIGHTS_FILE",
    "FloatDtype",
    "binary_layers",
    "check_float_dtype",
    "load_packed_state",
    "packed_state",
    "read_packed",
    "save_packed",
]
