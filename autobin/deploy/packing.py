"""Bit layouts of the packed kernels: weights per output-channel block, input along channels.

Weights (built once per layer): the boolean signs ``(O, C/groups, kh, kw)`` (``True`` for +1)
become ``uint64`` words stored as ``int64`` with shape ``(groups, nob, L, 32)``: per group,
blocks of 32 output channels (``nob = ceil(Og / 32)``, padded channels all zero), ``L = kh *
kw * K`` words per output channel with ``l = tap * K + k`` and ``K = ceil(Cg / 64)``; word ``k``
of a tap holds input channels ``64k .. 64k+63`` of the group, channel ``c`` at bit ``c % 64``
(bits past ``Cg`` are zero). The same layout serves every kernel path and the reference.

Inputs are packed at run time by the kernel (``autobin_pack`` in ``kernel.cpp``) with the same
word layout per pixel: ``(N, H, W, groups, K)`` words.
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


def pack_weight_signs(signs: torch.Tensor, groups: int) -> torch.Tensor:
    """Pack weight signs ``(O, Cg, kh, kw)`` into the kernel layout (module docstring)."""
    if signs.dtype != torch.bool or signs.dim() != 4:
        raise TypeError(
            f"weight signs must be a 4-D bool tensor, got {signs.dtype} {signs.dim()}-D"
        )
    out, cg, kh, kw = signs.shape
    if out % groups:
        raise ValueError(f"{out} output channels do not split into {groups} groups")
    og, k = out // groups, words_per_group(cg)
    taps = kh * kw
    s = signs.reshape(groups, og, cg, taps).permute(0, 1, 3, 2)  # (G, Og, T, Cg)
    s = torch.nn.functional.pad(s, (0, k * WORD - cg))
    words = _bits_to_words(s).reshape(groups, og, taps * k)  # (G, Og, L)
    nob = (og + OBLOCK - 1) // OBLOCK
    words = torch.nn.functional.pad(words, (0, 0, 0, nob * OBLOCK - og))
    return words.reshape(groups, nob, OBLOCK, taps * k).permute(0, 1, 3, 2).contiguous()


def unpack_weight_signs(
    wbits: torch.Tensor, out_channels: int, channels_per_group: int, kernel: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`pack_weight_signs`: bool signs ``(O, Cg, kh, kw)``."""
    groups, nob, length, _ = wbits.shape
    og = out_channels // groups
    kh, kw = kernel
    taps, k = kh * kw, words_per_group(channels_per_group)
    words = wbits.permute(0, 1, 3, 2).reshape(groups, nob * OBLOCK, length)[:, :og]
    bits = _words_to_bits(words.reshape(groups, og, taps, k))[..., :channels_per_group]
    return bits.permute(0, 1, 3, 2).reshape(out_channels, channels_per_group, kh, kw)


def tap_popcounts(signs: torch.Tensor) -> torch.Tensor:
    """``pcw[o, tap]``: number of +1 weights of output channel ``o`` at each tap (int32)."""
    out, cg, kh, kw = signs.shape
    return signs.reshape(out, cg, kh * kw).sum(dim=1, dtype=torch.int32).contiguous()


__all__ = [
    "OBLOCK",
    "WORD",
    "pack_weight_signs",
    "tap_popcounts",
    "unpack_weight_signs",
    "words_per_group",
]
