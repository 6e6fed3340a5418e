"""Packed layers: every kernel path against the pure-torch reference and fake quantization."""

from __future__ import annotations

import itertools

import pytest
import torch
from deploy_checks import assert_within_bound

from autobin.deploy import PackedConv2d, PackedLinear, use_kernel
from autobin.deploy.layers import InferenceMaxout
from autobin.deploy.packing import pack_weight_signs, row_words, unpack_weight_signs
from autobin.deploy.reference import integer_terms, packed_conv_reference
from autobin.nn import Maxout

from .conftest import PATHS, integer_conv, random_conv, random_linear

# kernel, stride, padding, dilation, groups
GRID = list(itertools.product((1, 3, 5), (1, 2), (0, 1, 2), (1, 2), (1, 2)))


def _run(layer, x, path):
    with use_kernel(path), torch.no_grad():
        return layer(x)


def _fits(k, d, p, size):
    return size + 2 * p >= d * (k - 1) + 1


@pytest.mark.parametrize(("k", "s", "p", "d", "g"), GRID)
def test_integer_outputs_equal_the_reference_exactly_on_every_path(k, s, p, d, g):
    """Integer sets make every output an exact integer: all paths must agree bit for bit.

    70 input channels (a word and a partial word per group for g=1; 35 per group for g=2),
    38 output channels (not a multiple of the 32-channel blocks), batch 1 (9x10 input) and 3
    (16x21: rows of interior positions, which the kernels read in place instead of gathering).
    """
    assert _fits(k, d, p, 9)  # the 9x10 input fits every kernel of the grid
    layer = integer_conv(70, 38, k, s, p, d, g, seed=k * 100 + s * 10 + p + d * 7 + g)
    packed = PackedConv2d(layer)
    for batch, (h, w) in ((1, (9, 10)), (3, (16, 21))):
        x = torch.randn(batch, 70, h, w, generator=torch.Generator().manual_seed(batch))
        x[0, :, 0, 0] = 1.0  # values exactly at the threshold binarize to +1
        ref = packed_conv_reference(packed, x)
        assert torch.equal(ref, ref.round())
        with torch.no_grad():
            assert torch.equal(ref, layer(x))  # the fake-quantized layer is exact here too
        for path in PATHS:
            assert torch.equal(_run(packed, x, path), ref), path


@pytest.mark.parametrize("form", ["paper", "code"])
@pytest.mark.parametrize(("k", "s", "p", "d", "g"), GRID[::5])
def test_random_sets_match_fake_quantization_within_the_bound(k, s, p, d, g, form):
    layer = random_conv(130, 46, k, s, p, d, g, seed=k + 3 * s + 5 * p + 7 * d + g, form=form)
    packed = PackedConv2d(layer)
    x = torch.randn(3, 130, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fake = layer(x)
    for path in PATHS:
        assert_within_bound(_run(packed, x, path), fake, packed.error_bound)


@pytest.mark.parametrize("method", ["sign", "xnor"])
def test_baselines_match_fake_quantization(method):
    layer = random_conv(96, 40, 3, 1, 1, 1, 1, seed=3, method=method)
    with torch.no_grad():
        layer.bias.zero_()
    packed = PackedConv2d(layer)
    x = torch.randn(2, 96, 7, 7, generator=torch.Generator().manual_seed(1))
    x[0, :5, 0, 0] = 0.0  # sgn(0) = +1
    x[0, 5:9, 0, 0] = -0.0
    with torch.no_grad():
        fake = layer(x)
    for path in PATHS:
        y = _run(packed, x, path)
        if method == "sign":
            assert torch.equal(y, fake), path  # +-1 everywhere, no bias: integers, exact
        assert_within_bound(y, fake, packed.error_bound)


def test_integer_terms_count_valid_taps_only():
    """At a corner of a 3x3 conv with padding 1 only 4 taps exist: nv = 4 * Cg."""
    layer = integer_conv(10, 4, 3, 1, 1, 1, 1, seed=0)
    packed = PackedConv2d(layer)
    x = torch.full((1, 10, 5, 5), 2.0)  # every input sign +1
    dot, sw, sa, nv = integer_terms(packed, x)
    assert nv[0, 0, 0, 0] == 40 and nv[0, 0, 1, 1] == 90 and nv[0, 0, 0, 2] == 60
    assert sa[0, 0, 0, 0] == 40 and sa[0, 0, 2, 2] == 90
    signs = torch.where(layer.weight_signs(), 1.0, -1.0)
    assert dot[0, 0, 0, 0] == signs[0, :, 1:, 1:].sum()
    assert sw[0, 0, 0, 0] == signs[0, :, 1:, 1:].sum()


@pytest.mark.parametrize("form", ["paper", "code"])
def test_linear_on_tokens_matches_fake_quantization(form, kernel_path):
    layer = random_linear(200, 67, seed=1, form=form)
    packed = PackedLinear(layer)
    x = torch.randn(3, 5, 200, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fake = layer(x)
    y = _run(packed, x, kernel_path)
    assert y.shape == (3, 5, 67)
    assert_within_bound(y, fake, packed.error_bound, dim=-1)


def test_folded_batchnorm_matches_conv_then_norm(kernel_path):
    layer = random_conv(64, 96, 3, 2, 1, 1, 1, seed=5)
    norm = torch.nn.BatchNorm2d(96)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(96, generator=gen))
        norm.running_var.copy_(torch.rand(96, generator=gen) + 0.1)
        norm.weight.copy_(torch.randn(96, generator=gen))
        norm.bias.copy_(torch.randn(96, generator=gen))
    norm.eval()
    packed = PackedConv2d(layer, norm=norm)
    x = torch.randn(2, 64, 14, 14, generator=gen)
    with torch.no_grad():
        fake = norm(layer(x))
    assert_within_bound(_run(packed, x, kernel_path), fake, packed.error_bound)


def test_dynamic_same_padding_matches_fake_quantization(kernel_path):
    layer = random_conv(33, 20, 3, 2, 0, 1, 1, seed=2)
    layer.dynamic_same_padding = True
    packed = PackedConv2d(layer)
    for size in (9, 10):  # odd and even: asymmetric padding
        x = torch.randn(1, 33, size, size + 1, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            fake = layer(x)
        assert_within_bound(_run(packed, x, kernel_path), fake, packed.error_bound)


def test_channels_last_and_non_contiguous_inputs(kernel_path):
    layer = integer_conv(80, 32, 3, 1, 1, 1, 1, seed=9)
    packed = PackedConv2d(layer)
    x = torch.randn(2, 80, 6, 7)
    ref = packed_conv_reference(packed, x)
    for variant in (x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).mT):
        assert torch.equal(_run(packed, variant, kernel_path), ref)


def test_other_dtypes_use_the_reference():
    layer = random_conv(16, 8, 3, 1, 1, 1, 1, seed=4)
    packed = PackedConv2d(layer)
    x = torch.randn(1, 16, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        y = packed(x)
        fake = layer.double()(x)
    assert y.dtype == torch.float64
    assert_within_bound(y, fake, packed.error_bound)


# channels per group, kernel, stride, padding, dilation, groups: fewer than 64 channels per
# group, dense kernel rows where they save words (all but 48 x 1)
DENSE = [(16, 3, 1, 1, 1, 1), (32, 3, 2, 1, 1, 1), (16, 3, 1, 2, 2, 2), (24, 7, 1, 3, 1, 1),
         (3, 5, 2, 2, 1, 1), (20, 3, 1, 1, 1, 3), (48, 1, 1, 0, 1, 1)]  # fmt: skip


def test_dense_rows_are_taken_where_they_save_words():
    # (Cg, kw) -> words per kernel row: dense for fewer than 64 channels where it saves words
    cases = {(16, 3): 1, (32, 3): 2, (24, 7): 3, (3, 5): 1, (20, 3): 1, (48, 3): 3, (63, 2): 2,
             (16, 1): 1, (64, 3): 3, (70, 3): 6, (128, 3): 6, (1, 64): 1}  # fmt: skip
    assert {key: row_words(*key) for key in cases} == cases


@pytest.mark.parametrize(("cg", "k", "s", "p", "d", "g"), DENSE)
def test_small_channel_counts_equal_the_reference_exactly_on_every_path(cg, k, s, p, d, g):
    """Fewer than 64 channels per group: several taps share a word of the kernel row (their
    bits straddle word boundaries for 24 channels x 7 taps); integer sets, so every path must
    equal the reference bit for bit; batch 1 and 3, sizes not a multiple of the pixel blocks."""
    layer = integer_conv(cg * g, 19 * g, k, s, p, d, g, seed=cg + k + s + d + g)
    packed = PackedConv2d(layer)
    assert packed.wbits.shape[2] == k * row_words(cg, k)
    for batch, (h, w) in ((1, (9, 10)), (3, (13, 19))):
        x = torch.randn(batch, cg * g, h, w, generator=torch.Generator().manual_seed(batch))
        ref = packed_conv_reference(packed, x)
        assert torch.equal(ref, ref.round())
        with torch.no_grad():
            assert torch.equal(ref, layer(x))
        for path in PATHS:
            assert torch.equal(_run(packed, x, path), ref), path


def test_weight_packing_round_trips_odd_shapes():
    gen = torch.Generator().manual_seed(0)
    for shape, groups in (
        ((70, 67, 3, 3), 1),
        ((6, 5, 1, 5), 2),
        ((33, 130, 1, 1), 3),
        ((9, 16, 3, 3), 1),
        ((8, 24, 2, 7), 2),
        ((5, 3, 5, 5), 1),
    ):
        signs = torch.rand(shape, generator=gen) > 0.5
        wbits = pack_weight_signs(signs, groups)
        assert torch.equal(unpack_weight_signs(wbits, shape[0], shape[1], shape[2:]), signs)
    # padded output channels and bits past the channel count stay zero
    wbits = pack_weight_signs(torch.ones((5, 3, 1, 1), dtype=torch.bool), 1)
    assert wbits.shape == (1, 1, 1, 32)
    assert wbits[0, 0, 0, :5].tolist() == [7] * 5 and wbits[0, 0, 0, 5:].abs().sum() == 0


def test_packed_layer_holds_bits_not_float_weights():
    layer = random_conv(256, 256, 3, 1, 1, 1, 1, seed=0)
    packed = PackedConv2d(layer)
    float_bytes = layer.weight.numel() * 4
    assert packed.wbits.numel() * 8 == 256 * 256 * 9 // 8
    assert not any(b.dtype.is_floating_point and b.numel() > 10 * 256 for b in packed.buffers())
    assert packed.packed_bytes() * 20 < float_bytes


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens"])
def test_inference_maxout_equals_maxout_bit_for_bit(layout, kernel_path):
    gen = torch.Generator().manual_seed(0)
    maxout = Maxout(37)
    with torch.no_grad():
        maxout.gamma_pos.copy_(torch.rand(37, generator=gen) + 0.5)
        maxout.gamma_neg.copy_(torch.randn(37, generator=gen))
    fast = InferenceMaxout(maxout)
    if layout == "tokens":
        x = torch.randn(2, 9, 37, generator=gen)
    else:
        x = torch.randn(2, 37, 5, 6, generator=gen)
        x[0, :, 0, 0] = 0.0
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), use_kernel(kernel_path):
        y = fast(x)
        ref = maxout(x)
    assert torch.equal(y, ref)
    assert y.stride() == ref.stride() or layout == "channels_last"


def test_fused_residual_adds_the_input(kernel_path):
    layer = random_conv(40, 40, 3, 1, 1, 1, 1, seed=8)
    packed = PackedConv2d(layer, residual=True)
    x = torch.randn(2, 40, 9, 11, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fake = layer(x) + x
    bound = packed.error_bound + 2.0**-22 * float(fake.abs().max())
    assert_within_bound(_run(packed, x, kernel_path), fake, bound)


def test_batch_64_and_string_padding_are_exact(kernel_path):
    """Batch 64 (many pixel blocks and threads) and padding="same" with an even kernel
    (asymmetric: one more row/column after than before)."""
    for k, padding in ((3, 1), (4, "same")):
        layer = integer_conv(20, 12, k, 1, padding, 2 if k == 4 else 1, 1, seed=k)
        packed = PackedConv2d(layer)
        x = torch.randn(64, 20, 6, 7, generator=torch.Generator().manual_seed(k))
        ref = packed_conv_reference(packed, x)
        with torch.no_grad():
            assert torch.equal(ref, layer(x))
        assert torch.equal(_run(packed, x, kernel_path), ref)


def test_thread_counts_give_identical_results():
    layer = integer_conv(70, 45, 3, 1, 1, 1, 1, seed=11)
    packed = PackedConv2d(layer)
    x = torch.randn(5, 70, 13, 9, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append([_run(packed, x, p) for p in PATHS])
    finally:
        torch.set_num_threads(before)
    for per_path in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], per_path))
