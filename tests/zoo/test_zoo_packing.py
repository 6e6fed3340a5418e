"""Bit packing of signs (autobin.quantizers.packing): exact round trips and layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autobin.nn import AdaBinConv2d
from autobin.quantizers.packing import BIT_ORDER, pack_signs, packed_nbytes, unpack_signs

SHAPES = [
    (1,),
    (7,),
    (8,),
    (9,),
    (13, 5),
    (3, 3, 3, 3),
    (21, 5, 3, 3),  # grouped conv: 15 -> 21 channels, groups=3
    (13, 1, 3, 3),  # depthwise, odd channel count
    (17, 7, 1, 1),
    (0, 4),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_is_exact(shape):
    g = torch.Generator().manual_seed(sum(shape) + len(shape))
    signs = torch.rand(shape, generator=g) >= 0.5
    packed = pack_signs(signs)
    assert packed.dtype == torch.uint8
    assert packed.shape == (packed_nbytes(signs.numel()),)
    assert torch.equal(unpack_signs(packed, shape), signs)


@pytest.mark.parametrize("fill", [True, False])
def test_constant_signs_and_zero_padding(fill):
    signs = torch.full((3, 5), fill)  # 15 entries: last byte has one pad bit
    packed = pack_signs(signs)
    assert packed.tolist() == ([255, 127] if fill else [0, 0])


def test_bit_order_matches_numpy_little():
    assert BIT_ORDER == "little"
    signs = torch.rand(11, 3, 3, generator=torch.Generator().manual_seed(0)) >= 0.5
    expected = np.packbits(signs.numpy().reshape(-1), bitorder="little")
    assert np.array_equal(pack_signs(signs).numpy(), expected)
    assert (
        pack_signs(torch.tensor([True, False, False, False, False, False, False, False])).item()
        == 1
    )


def test_grouped_conv_weight_signs_round_trip():
    conv = AdaBinConv2d(15, 21, 3, groups=3, padding=1)
    signs = conv.weight_signs()
    packed = pack_signs(signs)
    assert packed.numel() == (21 * 5 * 9 + 7) // 8 == 119
    assert torch.equal(unpack_signs(packed, conv.weight.shape), signs)


def test_packed_nbytes():
    assert [packed_nbytes(n) for n in (0, 1, 8, 9, 16, 945)] == [0, 1, 1, 2, 2, 119]
    with pytest.raises(ValueError):
        packed_nbytes(-1)


def test_errors_are_clear():
    with pytest.raises(TypeError, match="boolean"):
        pack_signs(torch.ones(3))
    with pytest.raises(TypeError, match="uint8"):
        unpack_signs(torch.zeros(2, dtype=torch.int32), (9,))
    with pytest.raises(ValueError, match="need a 1-D tensor of 2 bytes"):
        unpack_signs(torch.zeros(3, dtype=torch.uint8), (9,))
