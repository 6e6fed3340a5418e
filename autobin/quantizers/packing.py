"""Bit packing of binary signs: 8 signs per byte.

A binary weight ``Wb = alpha_w[o] * s + beta_w[o]`` with ``s in {-1, +1}`` is fully described by
its per-channel set and one bit per entry. The bit layout used by autobin's packed checkpoints:

* the boolean sign tensor (``True`` for ``+1``) is flattened in row-major (C) order, so for a
  conv weight of shape ``(O, C_in/groups, kh, kw)`` the flat index is
  ``((o * C_in/groups + c) * kh + i) * kw + j``;
* flat entry ``k`` goes to byte ``k // 8``, bit ``k % 8`` counted from the least significant
  bit (``BIT_ORDER = "little"``, numpy's ``packbits(..., bitorder="little")``);
* a set bit means ``+1``, a clear bit ``-1``;
* the last byte is padded with zero bits, so the packed tensor has exactly
  ``ceil(numel / 8)`` bytes (:func:`packed_nbytes`); the original shape is stored alongside.

Packing and unpacking are exact inverses for any shape, including odd channel counts and sizes
that are not a multiple of 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

BitOrder = Literal["little"]
BIT_ORDER: BitOrder = "little"

_BIT_VALUES = (1, 2, 4, 8, 16, 32, 64, 128)


def packed_nbytes(numel: int) -> int:
    """Number of bytes that hold ``numel`` packed signs: ``ceil(numel / 8)``."""
    if numel < 0:
        raise ValueError(f"packed_nbytes needs a non-negative element count, got {numel}")
    return (numel + 7) // 8


def pack_signs(signs: torch.Tensor) -> torch.Tensor:
    """Pack a boolean sign tensor into a 1-D ``uint8`` tensor, 8 signs per byte.

    Args:
        signs: boolean tensor of any shape, ``True`` for ``+1`` (see the module docstring for
            the bit order).

    Returns:
        ``uint8`` tensor of ``ceil(signs.numel() / 8)`` bytes on ``signs``' device; pad bits
        are zero.
    """
    if signs.dtype != torch.bool:
        raise TypeError(
            f"pack_signs expects a boolean tensor (True for +1), got dtype {signs.dtype}; "
            "convert with `tensor >= 0` or a layer's weight_signs()"
        )
    flat = signs.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor(_BIT_VALUES, dtype=torch.uint8, device=flat.device)
    # Each byte's bits are distinct powers of two, so the sum never exceeds 255.
    return (flat.reshape(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_signs(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pack_signs`: a boolean tensor of ``shape`` (``True`` for ``+1``).

    Args:
        packed: 1-D ``uint8`` tensor of exactly ``ceil(prod(shape) / 8)`` bytes.
        shape: the original shape of the sign tensor.

    Raises:
        TypeError: ``packed`` is not ``uint8``.
        ValueError: the byte count does not match ``shape``.
    """
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_signs expects a uint8 tensor, got dtype {packed.dtype}")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"unpack_signs got a negative dimension in shape {shape}")
    numel = 1
    for d in shape:
        numel *= d
    expected = packed_nbytes(numel)
    if packed.dim() != 1 or packed.numel() != expected:
        raise ValueError(
            f"packed signs for shape {shape} ({numel} entries) need a 1-D tensor of {expected} "
            f"bytes, got shape {tuple(packed.shape)}"
        )
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1
    return bits.reshape(-1)[:numel].to(torch.bool).reshape(shape)


__all__ = ["BIT_ORDER", "BitOrder", "pack_signs", "packed_nbytes", "unpack_signs"]
