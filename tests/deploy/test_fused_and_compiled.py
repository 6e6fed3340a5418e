"""Fused glue, compiled chains and low-precision float parts (issue 18).

Fusion and compilation change where work is done, never a value: every deployed variant equals
the layer-by-layer model bit for bit on every kernel path, including Maxout slopes and
BatchNorm scales that are negative or zero (where a derived threshold would flip or
degenerate: the comparison is made on the same float value the unfused model binarizes).
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import autobin
from autobin.deploy import PackedConv2d, use_kernel
from autobin.deploy.build import cpu_has_bf16, cpu_has_vnni
from autobin.deploy.float_parts import (
    Bf16Conv2d,
    Fp32Conv2d,
    Int8Conv2d,
    bf16_conv_reference,
    int8_conv_reference,
)
from autobin.deploy.layers import InferenceMaxout
from autobin.deploy.packing import row_words
from autobin.deploy.plan import CompiledChain
from autobin.nn import BinaryLayer, Maxout

from .conftest import PATHS, random_conv


def _resnet(size: int = 40, *, awkward: bool = True, **kwargs) -> nn.Module:
    """A binarized timm resnet18 with trained-looking statistics; ``awkward``: Maxout slopes
    and BatchNorm scales include negative and zero values; ``kwargs`` go to timm."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, **kwargs)
    bnn = autobin.binarize(model, "adabin", example_inputs=(torch.randn(2, 3, size, size),))
    bnn.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in bnn.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                if awkward:
                    m.weight[: c // 4] *= -1.0  # negative scales
                    m.weight[c // 4 : c // 4 + 2] = 0.0  # zero scales: a constant channel
            if isinstance(m, Maxout) and awkward:
                c = m.num_channels
                m.gamma_pos[: c // 3] *= -1.0
                m.gamma_neg[c // 3 : c // 2] = 0.0
                m.gamma_pos[c // 2 : c // 2 + 3] = 0.0
            if isinstance(m, BinaryLayer):
                m.act_beta.fill_(float(torch.randn((), generator=gen)) * 0.05)
    return bnn


def _stage(i: int) -> list[str]:
    return [f"layer{i}.{b}.conv{j}" for b in (0, 1) for j in (1, 2)]


def _x(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("float_parts", ["fp32", "auto"])
def test_fused_glue_equals_the_layer_by_layer_model_bit_for_bit(float_parts):
    bnn = _resnet()
    plain = autobin.deploy(bnn, float_parts=float_parts, fuse_glue=False, compile_graph=False)
    fused = autobin.deploy(bnn, float_parts=float_parts, compile_graph=False)
    compiled = autobin.deploy(bnn, float_parts=float_parts)
    s = fused.summary
    stem_fused = 1 if "conv1" in s.low_precision else 0  # the stem's Maxout, in its epilogue
    assert len(s.fused_maxouts) == 16 + stem_fused
    assert len(s.fused_adds) == 8 and len(s.packs_next) == 15
    assert s.packs_next["layer1.0.conv1"] == "layer1.0.conv2"
    # one C++ call covers the network when its float convs run in int8/bf16; with float32
    # convs (torch) the chains are cut where a stage's input also feeds its float32
    # downsample conv: the max pool and layer1, then one chain per stage (its downsample
    # conv's output is the chain's second input)
    whole = float_parts == "auto" and cpu_has_vnni() and cpu_has_bf16()
    chains = compiled.summary.compiled_chains
    if whole:
        (chain,) = chains
        assert chain[0] == "conv1" and chain[-1] == "layer4.1.conv2"
    else:
        assert chains == [["maxpool", *_stage(1)], _stage(2), _stage(3), _stage(4)]
    for path in PATHS:
        for x in (_x(1, 40, 40), _x(3, 37, 45, seed=2)):
            with use_kernel(path):
                ref = plain(x)
                assert torch.equal(fused(x), ref), path
                assert torch.equal(compiled(x), ref), path
    if float_parts == "fp32":  # and the fake-quantized model within the documented bound
        with torch.no_grad():
            fake = bnn(_x(3, 37, 45, seed=2))
        y = compiled(_x(3, 37, 45, seed=2))
        assert float((y - fake).abs().max()) <= 1e-3 * float(fake.abs().max())


def test_small_channel_network_fused_and_compiled_equal_layer_by_layer_bit_for_bit():
    """A narrow resnet18 with a deep stem (16 and 32 channels, as a detector backbone's):
    its 16/32-channel layers take the dense kernel rows (several taps per 64-bit word), and
    fused glue and compiled chains still equal the layers called one by one, on every path."""
    bnn = _resnet(channels=(32, 64, 96, 128), stem_width=16, stem_type="deep")
    plain = autobin.deploy(bnn, float_parts="fp32", fuse_glue=False, compile_graph=False)
    compiled = autobin.deploy(bnn, float_parts="fp32")
    packed = [m for m in plain.modules() if isinstance(m, PackedConv2d)]
    dense = [m for m in packed if row_words(m.in_channels // m.groups, m.kernel_size[1])
             < m.kernel_size[1] * ((m.in_channels // m.groups + 63) // 64)]  # fmt: skip
    assert {m.in_channels for m in dense} == {16, 32}
    assert compiled.summary.compiled_chains  # the stem and layer1 run in one C++ call
    for path in PATHS:
        for x in (_x(1, 40, 40), _x(2, 37, 45, seed=2)):
            with use_kernel(path):
                assert torch.equal(compiled(x), plain(x)), path
    with torch.no_grad():
        fake = bnn(_x(2, 37, 45, seed=2))
    y = compiled(_x(2, 37, 45, seed=2))
    assert float((y - fake).abs().max()) <= 1e-3 * float(fake.abs().max())


def test_stages_with_float32_downsample_convs_run_as_chains_with_a_second_input():
    """With float32 downsample convs (torch's, before the chain), each stage from its first
    conv1 to its last conv2 is one chain taking (x, downsample(x)): it equals the layers
    called one by one bit for bit on every path, for one image and several (the second
    input's per-image stride), also as a copy and a pickle, and runs its plan (no fallback)."""
    import copy
    import pickle

    bnn = _resnet()
    plain = autobin.deploy(bnn, float_parts="fp32", compile_graph=False)
    compiled = autobin.deploy(bnn, float_parts="fp32")
    chains = {n: m for n, m in compiled.model.named_modules() if isinstance(m, CompiledChain)}
    staged = [m for m in chains.values() if m.paths[0].endswith(".0.conv1")]
    assert [m.paths for m in staged] == [_stage(2), _stage(3), _stage(4)]
    graph = compiled.model.graph
    calls = {n.target: n for n in graph.nodes if n.op == "call_module"}
    for name, chain in chains.items():
        if chain in staged:
            x, x2 = calls[name].args  # the stage's input and its downsample conv's output
            downsample = compiled.model.get_submodule(x2.target)
            assert type(downsample) is nn.Conv2d and x2.args == (x,)
    clone, pickled = copy.deepcopy(compiled), pickle.loads(pickle.dumps(compiled))
    for path in PATHS:
        for x in (_x(1, 40, 40), _x(3, 37, 45, seed=2), _x(2, 64, 48, seed=3)):
            with use_kernel(path):
                ref = plain(x)
                assert torch.equal(compiled(x), ref), path
                assert torch.equal(clone(x), ref) and torch.equal(pickled(x), ref), path
    for m in staged:  # a plan per input shape, each with its second input
        assert len(m._plans) >= 2 and all(k[3] is not None and p for k, p in m._plans.items())
    # a second input shaped otherwise (broadcast by the add) runs the layers one by one
    chain, x = staged[0], torch.randn(2, 64, 10, 10)
    (conv1, *_), (conv2, *_), (conv3, *_), (conv4, *_) = chain._steps
    for x2 in (torch.randn(2, 128, 1, 1), torch.randn(1, 128, 5, 5)):
        y = conv2(conv1(x), x2)
        assert torch.equal(chain(x, x2), conv4(conv3(y), y))


def test_plan_arena_places_activations_first_fit_and_reuses_given_back_blocks():
    from autobin.deploy.plan import _Arena

    arena = _Arena()
    a, b, c = arena.take(100), arena.take(64), arena.take(200)  # 64-byte aligned blocks
    assert (a, b, c, arena.size) == (0, 128, 192, 448)
    arena.give(a)
    assert arena.take(64) == 0  # first fit, inside the freed 128 bytes
    arena.give(b)  # 64..192 free now (merged with the rest of a's block)
    assert arena.take(128) == 64 and arena.size == 448
    arena.give(c)  # the free block at the end grows in place
    assert arena.take(300) == 192 and arena.size == 512


def test_packed_bits_handed_over_are_not_used_after_an_in_place_change():
    producer = PackedConv2d(random_conv(64, 64, 3, 1, 1, 1, 1, seed=1), residual=True)
    consumer_layer = random_conv(64, 32, 3, 1, 1, 1, 1, seed=2)
    consumer = PackedConv2d(consumer_layer)
    producer.fuse_glue(next_input=(consumer.threshold, consumer.groups))
    x = torch.randn(2, 64, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = producer(x)
        assert getattr(y, "_autobin_bits", None) is not None
        assert torch.equal(consumer(y), consumer(y.clone()))  # handed-over bits are right
        y.mul_(-1.0)  # in place: the bits no longer describe y
        assert torch.equal(consumer(y), consumer(y.clone()))


@pytest.mark.skipif(not (cpu_has_vnni() and cpu_has_bf16()), reason="needs VNNI and BF16")
def test_compiled_chain_falls_back_layer_by_layer_and_is_one_module():
    fast = autobin.deploy(_resnet(awkward=False))
    chains = [m for m in fast.modules() if isinstance(m, CompiledChain)]
    assert len(chains) == 1 and chains[0].paths[-1] == "layer4.1.conv2"
    x = _x(2, 33, 35)
    layered = autobin.deploy(_resnet(awkward=False), compile_graph=False)
    assert torch.equal(fast(x), layered(x))
    with use_kernel("reference"):  # the chain runs its layers one by one
        assert torch.equal(fast(x), layered(x))


GEOMETRIES = [  # in, out, kernel, stride, padding, height, width
    (3, 64, 7, 2, 3, 30, 27),
    (3, 24, 3, 1, 1, 11, 13),
    (64, 128, 1, 2, 0, 14, 14),
    (70, 70, 3, 2, 1, 9, 10),
]


@pytest.mark.skipif(not cpu_has_vnni(), reason="int8 kernel needs AVX-512 VNNI")
@pytest.mark.parametrize(("cin", "cout", "k", "s", "p", "h", "w"), GEOMETRIES)
def test_int8_kernel_equals_its_torch_reference(cin, cout, k, s, p, h, w):
    torch.manual_seed(cin + cout + k)
    conv = nn.Conv2d(cin, cout, k, s, p).eval()
    layer = Int8Conv2d(conv)
    x = torch.randn(2, cin, h, w)
    x[1] *= 7.0  # another range: each image has its own input scale
    with torch.no_grad():
        y = layer(x)
        ref = int8_conv_reference(layer, x)
        # the integer sums are exact; the kernel's final fused multiply-add rounds once
        assert float((y - ref).abs().max()) <= 4e-7 * float(ref.abs().max()) + 1e-6
        assert torch.equal(layer(x[1:]), y[1:])  # an image's result ignores the batch
        dense = conv(x)
    assert float((y - dense).abs().max()) <= 0.03 * float(dense.abs().max())


@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 kernel needs AVX-512 BF16")
@pytest.mark.parametrize(("cin", "cout", "k", "s", "p", "h", "w"), GEOMETRIES)
def test_bf16_kernel_equals_its_reference_within_float32_summation(cin, cout, k, s, p, h, w):
    torch.manual_seed(cin + cout + k)
    conv = nn.Conv2d(cin, cout, k, s, p).eval()
    layer = Bf16Conv2d(conv)
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        y = layer(x)
        ref = bf16_conv_reference(layer, x)
        # products of bf16 values are exact in float32; only the n-term float32 sum rounds
        xb = x.to(torch.bfloat16).float().abs()
        weight = layer.weight_bits.view(torch.bfloat16).float().abs()
        magnitude = F.conv2d(F.pad(xb, (p, p, p, p)), weight, stride=s)
        n = cin * k * k
        bound = (n + 2) * 2.0**-24 * (magnitude + conv.bias.abs().reshape(1, -1, 1, 1))
        assert ((y - ref).abs() <= bound).all()
        dense = conv(x)
    assert float((y - dense).abs().max()) <= 0.02 * float(dense.abs().max())


@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 kernel needs AVX-512 BF16")
@pytest.mark.parametrize(("cin", "cout", "s", "h", "w"), [(64, 128, 2, 14, 14), (35, 20, 2, 15, 13),
                                                          (16, 70, 3, 11, 7)])  # fmt: skip
def test_bf16_strided_1x1_converts_only_the_pixels_it_reads_with_the_same_result(
    cin, cout, s, h, w
):
    # the strided 1x1 path converts the pixels it reads into a compact image; run at stride 1
    # on those pixels, the general path must give the same floats bit for bit
    torch.manual_seed(cin + cout)
    conv = nn.Conv2d(cin, cout, 1, s).eval()
    flat = nn.Conv2d(cin, cout, 1, 1).eval()
    flat.load_state_dict(conv.state_dict())
    x = torch.randn(3, cin, h, w)
    with torch.no_grad():
        y = Bf16Conv2d(conv)(x)
        assert y.shape == conv(x).shape
        assert torch.equal(y, Bf16Conv2d(flat)(x[:, :, ::s, ::s].contiguous()))


@pytest.mark.parametrize(
    ("cin", "cout", "k", "s", "p", "h", "w"), [*GEOMETRIES, (3, 16, 3, 2, 1, 33, 34)]
)
def test_fp32_kernel_equals_the_conv_within_float32_summation_on_every_path(
    cin, cout, k, s, p, h, w
):
    """Blocks of 8 output pixels in raster order: some cross an output row (widths 5, 7, 14,
    17) or reach past the image's edges; output channels not a multiple of 16 (70)."""
    torch.manual_seed(cin + cout + k)
    conv = nn.Conv2d(cin, cout, k, s, p).eval()
    mo = Maxout(cout)
    with torch.no_grad():
        mo.gamma_pos.uniform_(-1.0, 2.0)
        mo.gamma_neg.uniform_(-1.0, 2.0)
    maxout = InferenceMaxout(mo)
    layer, fused = Fp32Conv2d(conv), Fp32Conv2d(conv, maxout)
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        exact = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), s, p)
        magnitude = F.conv2d(x.double().abs(), conv.weight.double().abs(), None, s, p)
        bound = (cin * k * k + 2) * 2.0**-24 * (magnitude + conv.bias.double().abs().reshape(
            1, -1, 1, 1))  # fmt: skip
        for path in PATHS:
            with use_kernel(path):
                y = layer(x)
                assert y.shape == exact.shape and y.dtype == torch.float32
                assert ((y.double() - exact).abs() <= bound).all(), path
                if path != "reference":  # (torch's conv) an image's result ignores the batch
                    assert torch.equal(layer(x[1:]), y[1:]), path
                # the fused Maxout is the Maxout module on the same floats
                assert torch.equal(fused(x), maxout(y)), path


def test_fp32_kernel_float_convs_run_inside_one_chain_bit_for_bit():
    """``float_parts="fp32-kernel"``: the stem and downsample convs run in float32 in the
    kernel, inside the compiled chains (one C++ call for the whole resnet18; a deep stem's
    float conv hands the next binary conv its output packed, 16 or 24 channels), equal to the
    layers called one by one bit for bit on every path, and to torch's float32 convs within
    float32 rounding."""
    for kwargs in (
        {},
        {"channels": (32, 64, 96, 128), "stem_width": 16, "stem_type": "deep"},
        {"channels": (32, 64, 96, 128), "stem_width": 24, "stem_type": "deep"},
    ):
        bnn = _resnet(**kwargs)
        plain = autobin.deploy(bnn, float_parts="fp32-kernel", fuse_glue=False, compile_graph=False)
        compiled = autobin.deploy(bnn, float_parts="fp32-kernel")
        torch_fp32 = autobin.deploy(bnn, float_parts="fp32")
        stem = "conv1.0" if kwargs else "conv1"
        float_convs = [n for n, m in bnn.named_modules() if type(m) is nn.Conv2d]
        assert stem in float_convs and len(float_convs) >= 4  # the stem, the downsample convs
        assert compiled.summary.low_precision == dict.fromkeys(float_convs, "fp32-kernel")
        (chain,) = compiled.summary.compiled_chains
        assert chain[0] == stem and chain[-1] == "layer4.1.conv2"
        assert compiled.summary.float_parts == "fp32-kernel"
        for path in PATHS:
            for x in (_x(1, 40, 40), _x(3, 37, 45, seed=2)):
                with use_kernel(path):
                    ref = plain(x)
                    assert torch.equal(compiled(x), ref), (path, kwargs)
                    exact = torch_fp32(x)
                    err = float((ref - exact).abs().max())
                    assert err <= 1e-4 * float(exact.abs().max()), (path, kwargs)


def test_float_parts_choice_per_layer():
    bnn = _resnet(awkward=False)
    auto = autobin.deploy(bnn)
    expected = {}
    if cpu_has_vnni():
        expected["conv1"] = "int8"
    if cpu_has_bf16():
        expected.update({f"layer{i}.0.downsample.0": "bf16" for i in (2, 3, 4)})
    assert auto.summary.low_precision == expected
    assert autobin.deploy(bnn, float_parts="fp32").summary.low_precision == {}
    kernel32 = autobin.deploy(bnn, float_parts="fp32-kernel").summary
    float_convs = ["conv1", *(f"layer{i}.0.downsample.0" for i in (2, 3, 4))]
    assert kernel32.low_precision == dict.fromkeys(float_convs, "fp32-kernel")
    assert "4 in the fp32 kernel" in str(kernel32)
    with pytest.raises(autobin.AutobinError, match="unknown float_parts 'fp16'"):
        autobin.deploy(bnn, float_parts="fp16")


def test_demo_table_row_for_the_deployed_students_latency():
    from pathlib import Path

    from autobin.deploy.bench import single_image_latency
    from autobin.pipelines import RunResult

    bnn = _resnet(awkward=False)
    teacher = timm.create_model("resnet18", num_classes=10).eval()
    float_s, deployed_s = single_image_latency(teacher, autobin.deploy(bnn), _x(1, 40, 40)[0])
    assert float_s > 0 and deployed_s > 0
    report = {"binary_mac_share": 0.9, "float_size_bytes": 2**20, "packed_size_bytes": 2**17}
    res = RunResult(Path("runs/x"), 99.0, 98.0, None, report, teacher, bnn)
    table = res.summary(latency=(0.004, 0.001))
    assert "1-image latency                  4.00 ms         1.00 ms deployed, 4.0x faster" in table
    assert "latency" not in res.summary()


@pytest.mark.skipif(not (cpu_has_vnni() and cpu_has_bf16()), reason="needs VNNI and BF16")
def test_compiled_plan_follows_buffers_that_move():
    fast = autobin.deploy(_resnet(awkward=False))
    x = _x(1, 40, 40)
    before = fast(x)
    state = {k: v.clone() for k, v in fast.state_dict().items()}
    fast.load_state_dict(state, assign=True)  # every buffer is a new tensor now
    fast.share_memory()
    assert torch.equal(fast(x), before)


def test_deployed_model_copies_and_pickles(tmp_path):
    import copy

    fast = autobin.deploy(_resnet(awkward=False))
    x = _x(2, 40, 40)
    before = fast(x)  # builds the plans
    clone = copy.deepcopy(fast)
    torch.save(fast, tmp_path / "fast.pt")
    loaded = torch.load(tmp_path / "fast.pt", weights_only=False)
    del fast
    assert torch.equal(clone(x), before) and torch.equal(loaded(x), before)


@pytest.mark.skipif(not (cpu_has_vnni() and cpu_has_bf16()), reason="needs VNNI and BF16")
def test_a_chain_given_input_it_cannot_take_lets_its_first_layer_say_why():
    from autobin.deploy.errors import DeployInputError

    fast = autobin.deploy(_resnet(awkward=False))
    chain = fast.model.compiled_chain_0
    with pytest.raises(DeployInputError, match=r"expects input \(N, 3, H, W\)"):
        chain(torch.randn(1, 4, 40, 40))
