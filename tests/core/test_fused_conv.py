"""The fused binary convolution (autobin/nn/fused.py) against binarize-then-convolve.

Binary convs keep only their float input for backward and recompute the binary input there.
Same ops on the same inputs: values and every gradient must match the two-node form bit for bit.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from autobin.nn import AdaBinConv2d, SignConv2d, XnorConv2d
from autobin.quantizers import ADABIN_INPUTS, SIGN_INPUT

LAYERS = {
    "adabin-paper": lambda **kw: AdaBinConv2d(**kw, act_beta_init=0.2, act_alpha_init=0.8),
    "adabin-code-ede": lambda **kw: AdaBinConv2d(
        **kw, act_form="code", weight_estimator="ede", act_beta_init=0.2, act_alpha_init=0.8
    ),
    "sign": lambda **kw: SignConv2d(**kw),
    "xnor": lambda **kw: XnorConv2d(**kw),
}
GEOMETRIES = {
    "3x3": {"in_channels": 8, "out_channels": 6, "kernel_size": 3, "padding": 1},
    "stride2-bias": {
        "in_channels": 8,
        "out_channels": 6,
        "kernel_size": 3,
        "stride": 2,
        "padding": 1,
        "bias": True,
    },
    "grouped-dilated": {
        "in_channels": 8,
        "out_channels": 8,
        "kernel_size": 3,
        "padding": 2,
        "dilation": 2,
        "groups": 4,
        "bias": False,
    },
    "valid": {"in_channels": 8, "out_channels": 4, "kernel_size": 1, "padding": "valid"},
}


def _two_node(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference: the autograd binarizer's output fed to a plain F.conv2d."""
    padding = (0, 0) if layer.padding == "valid" else layer.padding
    ab = layer.binarize_input(x)
    w = layer.binary_weight()
    return F.conv2d(ab, w, layer.bias, layer.stride, padding, layer.dilation, layer.groups)


def _run(layer, x, forward, autocast: bool):
    torch.manual_seed(3)
    layer.zero_grad(set_to_none=True)
    xi = x.detach().clone().requires_grad_()
    ctx = torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        out = forward(layer, xi)
    (out.float() * torch.randn(out.shape)).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    return out.detach(), xi.grad, grads


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("method", LAYERS)
def test_fused_conv_equals_binarize_then_convolve(method, geometry, autocast) -> None:
    torch.manual_seed(0)
    layer = LAYERS[method](**GEOMETRIES[geometry])
    assert layer._fused_geometry is not None  # the fused path is the one under test
    x = torch.randn(3, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, :3] = torch.tensor([0.2, -0.0, 0.0])  # exactly on beta_a / signed zeros
    fused = _run(layer, x, lambda m, t: m(t), autocast)
    ref = _run(layer, x, _two_node, autocast)
    assert fused[0].dtype == ref[0].dtype
    assert torch.equal(fused[0], ref[0])
    assert torch.equal(fused[1], ref[1])
    assert fused[1].stride() == ref[1].stride()
    assert fused[2].keys() == ref[2].keys()
    for name in ref[2]:
        assert torch.equal(fused[2][name], ref[2][name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_compiled_recompute_is_bit_identical_to_value(dtype) -> None:
    """Under torch.compile ``recompute`` is another expression (so it is not merged with the
    forward's value and saved); it must still give the same bits."""
    torch.manual_seed(0)
    x = torch.randn(4, 5, 6, 6, dtype=dtype)
    x.view(-1)[:4] = torch.tensor([0.25, -0.0, 0.0, 0.25 + 1e-7], dtype=dtype)
    alpha, beta = torch.tensor(0.7), torch.tensor(0.25)
    for binarizer in ADABIN_INPUTS.values():
        value = binarizer.value(x, alpha, beta)
        assert value.dtype == dtype and value.unique().numel() == 2
        assert torch.equal(binarizer.recompute(x, alpha, beta), value)
        compiled = torch.compile(binarizer.recompute, fullgraph=True)(x, alpha, beta)
        assert torch.equal(compiled, value)
    assert torch.equal(torch.compile(SIGN_INPUT.recompute)(x), SIGN_INPUT.value(x))


def _saved_activation_tensors(module: torch.nn.Module, x: torch.Tensor) -> int:
    """How many tensors shaped like the input ``module`` keeps for backward."""
    saved: dict[int, torch.Size] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.shape == x.shape:
            saved[t.untyped_storage().data_ptr()] = t.shape
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    del out
    return len(saved)


def test_fused_conv_keeps_the_float_input_only() -> None:
    torch.manual_seed(0)
    layer = AdaBinConv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    assert _saved_activation_tensors(layer, x) == 1  # x; the binary input is recomputed
    two_node = _saved_activation_tensors(lambda t: _two_node(layer, t), x)
    assert two_node == 2  # x for the binarizer, the binary input for the conv


@pytest.mark.parametrize(
    "options",
    [{"padding_mode": "reflect", "padding": 1}, {"padding": "same"}],
    ids=["reflect", "same"],
)
def test_padding_the_fused_conv_cannot_express_uses_the_two_node_form(options) -> None:
    torch.manual_seed(0)
    layer = AdaBinConv2d(4, 4, 3, **options, act_beta_init=0.1)
    assert layer._fused_geometry is None
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 4, 7, 7)
    out.sum().backward()
    assert x.grad is not None and layer.act_alpha.grad is not None
