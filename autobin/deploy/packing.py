"""Bit layouts of the packed kernels: weights per output-channel block, input along channels.

Weights (built once per layer): the boolean signs ``(O, C/groups, kh, kw)`` (``True`` for +1)
become ``uint64`` words stored as ``int64`` with shape ``(groups, nob, L, 32)``: per group,
blocks of 32 output channels (``nob = ceil(Og / 32)``, padded channels all zero), ``L = kh *
RW`` words per output channel, ``RW`` words per kernel row (:func:`row_words`), ``l = i * RW +
r`` for word ``r`` of kernel row ``i``. A row holds its ``kw`` taps one after another: tap
``j`` in words ``j*K .. j*K + K-1`` (``K = ceil(Cg / 64)``, channel ``c`` at bit ``c % 64`` of
word ``c // 64``, bits past ``Cg`` zero); or, for fewer than 64 channels per group where that
saves words (*dense* rows, e.g. 16 or 32 channels in a 3-wide row), tap ``j``'s channel ``c``
at bit ``j*Cg + c`` of the row's bit string. The same layout serves every kernel path and the
reference.

Inputs are packed at run time by the kernel (``autobin_pack`` in ``kernel.cpp``) with the
per-tap word layout per pixel: ``(N, H, W, groups, K)`` words; the kernel builds dense rows
from them.
"""

from __future__ import annotations

import torch

OBLOCK = 32
WORD = 64


def words_per_group(channels_per_group: int) -> int:
    """``K``: 64-bit words holding one group's channels at one tap."""
    return (channels_per_group + WORD - 1) // WORD


def _bits_to_words(bits: torch.Tensor) -> torch.Tensor:
    """Pack the last dim (a multiple of 64, bool) into int64 words, bit ``i`` = entry ``i``."""
    # 8 bits per byte (LSB first), then 8 little-endian bytes per word
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    octets = bits.reshape(*bits.shape[:-1], -1, 8).to(torch.uint8) << shifts
    packed = octets.sum(dim=-1, dtype=torch.uint8).contiguous()  # distinct bits: no carries
    return packed.view(torch.int64)


def _words_to_bits(words: torch.Tensor) -> torch.Tensor:
    octets = words.contiguous().view(torch.uint8)  # little-endian bytes of each word
    shifts = torch.arange(8, dtype=torch.uint8, device=words.device)
    bits = (octets.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(*words.shape[:-1], -1).to(torch.bool)


def row_words(channels_per_group: int, kernel_width: int) -> int:
    """``RW``: words per kernel row of one output channel (dense rows where they save words;
    ``kernel.cpp``'s ``row_words`` is the same rule)."""
    k = words_per_group(channels_per_group)
    dense = (kernel_width * channels_per_group + WORD - 1) // WORD
    if channels_per_group < WORD and dense < kernel_width * k:
        return dense
    return kernel_width * k


def _row_bits(channels_per_group: int, kernel_width: int) -> int:
    """Bits per tap in a kernel row's bit string: ``Cg`` (dense rows) or ``64 * K``."""
    if row_words(channels_per_group, kernel_width) < kernel_width * words_per_group(
        channels_per_group
    ):
        return channels_per_group
    return words_per_group(channels_per_group) * WORD


def pack_weight_signs(signs: torch.Tensor, groups: int) -> torch.Tensor:
    """Pack weight signs ``(O, Cg, kh, kw)`` into the kernel layout (module docstring)."""
    if signs.dtype != torch.bool or signs.dim() != 4:
        raise TypeError(
            f"weight signs must be a 4-D bool tensor, got {signs.dtype} {signs.dim()}-D"
        )
    out, cg, kh, kw = signs.shape
    if out % groups:
        raise ValueError(f"{out} output channels do not split into {groups} groups")
    og, rw, tap_bits = out // groups, row_words(cg, kw), _row_bits(cg, kw)
    s = signs.reshape(groups, og, cg, kh, kw).permute(0, 1, 3, 4, 2)  # (G, Og, kh, kw, Cg)
    s = torch.nn.functional.pad(s, (0, tap_bits - cg)).reshape(groups, og, kh, kw * tap_bits)
    s = torch.nn.functional.pad(s, (0, rw * WORD - kw * tap_bits))
    words = _bits_to_words(s).reshape(groups, og, kh * rw)  # (G, Og, L)
    nob = (og + OBLOCK - 1) // OBLOCK
    words = torch.nn.functional.pad(words, (0, 0, 0, nob * OBLOCK - og))
    return words.reshape(groups, nob, OBLOCK, kh * rw).permute(0, 1, 3, 2).contiguous()


def unpack_weight_signs(
    wbits: torch.Tensor, out_channels: int, channels_per_group: int, kernel: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`pack_weight_signs`: bool signs ``(O, Cg, kh, kw)``."""
    groups, nob, length, _ = wbits.shape
    og, cg = out_channels // groups, channels_per_group
    kh, kw = kernel
    tap_bits = _row_bits(cg, kw)
    words = wbits.permute(0, 1, 3, 2).reshape(groups, nob * OBLOCK, length)[:, :og]
    rows = _words_to_bits(words.reshape(groups, og, kh, length // kh))[..., : kw * tap_bits]
    bits = rows.reshape(groups, og, kh, kw, tap_bits)[..., :cg]  # (G, Og, kh, kw, Cg)
    return bits.permute(0, 1, 4, 2, 3).reshape(out_channels, cg, kh, kw)


def tap_popcounts(signs: torch.Tensor) -> torch.Tensor:
    """``pcw[o, tap]``: number of +1 weights of output channel ``o`` at each tap (int32)."""
    out, cg, kh, kw = signs.shape
    return signs.reshape(out, cg, kh * kw).sum(dim=1, dtype=torch.int32).contiguous()


__all__ = [
    "OBLOCK",
    "WORD",
    "pack_weight_signs",
    "row_words",
    "tap_popcounts",
    "unpack_weight_signs",
    "words_per_group",
]
