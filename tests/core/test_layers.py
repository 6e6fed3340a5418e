"""AdaBinConv2d / AdaBinLinear: forward against hand-binarized F.conv2d / F.linear, conversion,
freezing, deployment views and switches (ADABIN.md sections 2, 3 and 6)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import autobin.nn
from autobin.nn import (
    AdaBinConv2d,
    AdaBinLinear,
    Maxout,
    SignConv2d,
    XnorLinear,
    method_spec,
)


def _hand_weight(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per output channel: beta = mean, alpha = max(population std, eps), alpha*sgn(u)+beta.

    Uses the same reductions as the library (row mean, then the population variance as the
    squared L2 norm of the centered row over n) so results are bitwise comparable; the float64
    check of the statistics themselves is in test_quantizers_values.py.
    """
    flat = w.reshape(w.shape[0], -1)
    beta = flat.mean(dim=1, keepdim=True)
    norm = torch.linalg.vector_norm(flat - beta, dim=1, keepdim=True)
    alpha = torch.sqrt(norm.square() / flat.shape[1]).clamp_min(eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    alpha, beta = alpha.reshape(shape), beta.reshape(shape)
    return torch.where((w - beta) / alpha >= 0, alpha * 1.0 + beta, alpha * -1.0 + beta)


def _hand_input(x: torch.Tensor, alpha: float, beta: float, form: str = "paper") -> torch.Tensor:
    a = torch.tensor(alpha, dtype=x.dtype)
    b = torch.tensor(beta, dtype=x.dtype)
    c = b if form == "paper" else a * b
    return torch.where(x >= b, c + a, c - a)


def _randomize_act(layer, alpha=0.75, beta=0.125):
    with torch.no_grad():
        layer.act_alpha.fill_(alpha)
        layer.act_beta.fill_(beta)
    return layer


# ----------------------------------------------------------------------------- public API
def test_public_names_exist():
    for name in ("AdaBinConv2d", "AdaBinLinear", "Maxout"):
        assert hasattr(autobin.nn, name) and name in autobin.nn.__all__
    assert issubclass(AdaBinConv2d, nn.Conv2d) and issubclass(AdaBinLinear, nn.Linear)
    assert AdaBinConv2d.__module__ == "autobin.nn.adabin"


def test_constructor_accepts_float_layer_positional_args():
    conv = AdaBinConv2d(4, 8, 3, 2, 1, 1, 2, False, "reflect", "cpu", torch.float64)
    ref = nn.Conv2d(4, 8, 3, 2, 1, 1, 2, False, "reflect", "cpu", torch.float64)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation"):
        assert getattr(conv, attr) == getattr(ref, attr)
    assert conv.groups == 2 and conv.bias is None and conv.padding_mode == "reflect"
    assert conv.weight.dtype == torch.float64 and conv.weight.shape == ref.weight.shape
    lin = AdaBinLinear(5, 3, False, "cpu", torch.float64)
    assert lin.bias is None and lin.weight.shape == (3, 5) and lin.weight.dtype == torch.float64
    # same positional parameter names as torch's layers
    for ours, theirs in ((AdaBinConv2d, nn.Conv2d), (AdaBinLinear, nn.Linear)):
        p_ours = [
            p.name
            for p in inspect.signature(ours.__init__).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        p_theirs = list(inspect.signature(theirs.__init__).parameters)
        assert p_ours == p_theirs
    # keyword options
    c = AdaBinConv2d(2, 2, 1, weight_estimator="ede", act_form="code", act_alpha_init=0.5)
    assert c.weight_estimator == "ede" and c.act_form == "code" and c.act_alpha.item() == 0.5


# ----------------------------------------------------------------------------- conv forward
CONV_CASES = {
    "plain": dict(in_channels=4, out_channels=6, kernel_size=3),
    "bias_stride_pad": dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
    "dilation": dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, dilation=2),
    "groups": dict(in_channels=6, out_channels=4, kernel_size=3, padding=1, groups=2),
    "depthwise": dict(in_channels=5, out_channels=5, kernel_size=3, padding=1, groups=5),
    "reflect": dict(
        in_channels=3, out_channels=4, kernel_size=3, padding=1, padding_mode="reflect"
    ),
    "circular": dict(
        in_channels=3, out_channels=4, kernel_size=3, padding=2, padding_mode="circular"
    ),
    "rect_same": dict(in_channels=3, out_channels=4, kernel_size=(3, 5), padding="same"),
    "no_bias": dict(in_channels=2, out_channels=3, kernel_size=2, bias=False),
}


@pytest.mark.parametrize("form", ["paper", "code"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_matches_f_conv2d_on_hand_binarized_tensors(case, form):
    torch.manual_seed(0)
    kw = CONV_CASES[case]
    layer = _randomize_act(AdaBinConv2d(**kw, act_form=form))
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.normal_()
    x = torch.randn(2, kw["in_channels"], 9, 8)
    xb = _hand_input(x, 0.75, 0.125, form)
    wb = _hand_weight(layer.weight.detach())
    if layer.padding_mode != "zeros":
        # Non-zero padding modes pad the binarized input (stays in the binary set).
        pad = layer._reversed_padding_repeated_twice
        ref = F.conv2d(
            F.pad(xb, pad, mode=layer.padding_mode), wb, layer.bias, layer.stride, 0,
            layer.dilation, layer.groups,
        )  # fmt: skip
        # padded values are still binary: the set is closed under reflect/circular padding
        assert set(F.pad(xb, pad, mode=layer.padding_mode).unique().tolist()) == set(
            xb.unique().tolist()
        )
    else:
        ref = F.conv2d(
            xb, wb, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    assert torch.equal(layer(x), ref)


def test_grouped_conv_equals_per_group_reference():
    """A grouped layer equals separate convs per group, each binarized by hand over its own
    n = (C_in/groups)*kh*kw weights per output channel."""
    torch.manual_seed(1)
    groups, cin, cout = 3, 6, 9
    layer = _randomize_act(AdaBinConv2d(cin, cout, 3, padding=1, groups=groups, bias=False))
    x = torch.randn(2, cin, 7, 7)
    xb = _hand_input(x, 0.75, 0.125)
    w = layer.weight.detach()
    n = (cin // groups) * 9
    assert w[0].numel() == n
    outs = []
    for gi in range(groups):
        wg = w[gi * 3 : (gi + 1) * 3].double()
        flat = wg.reshape(3, -1)
        beta = flat.sum(1) / n
        alpha = torch.sqrt(((flat - beta[:, None]) ** 2).sum(1) / n).clamp_min(1e-5)
        s = torch.where(flat >= beta[:, None], 1.0, -1.0).double()
        wbg = (alpha[:, None] * s + beta[:, None]).reshape(wg.shape)
        outs.append(F.conv2d(xb[:, gi * 2 : (gi + 1) * 2].double(), wbg, padding=1))
    ref = torch.cat(outs, dim=1)
    # float64 hand statistics and a different summation order: tolerance, not equality
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)
    alpha_w, beta_w = layer.weight_binary_set()
    flat = w.double().reshape(cout, -1)
    torch.testing.assert_close(beta_w.double(), flat.mean(1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        alpha_w.double(), flat.std(1, correction=0).clamp_min(1e-5), rtol=1e-6, atol=1e-7
    )


def test_depthwise_conv_uses_kh_kw_entries_per_channel():
    torch.manual_seed(2)
    layer = AdaBinConv2d(4, 4, 3, padding=1, groups=4, bias=False)
    w = layer.weight.detach()
    assert w[0].numel() == 9  # n = (C_in/groups)*kh*kw = 9, not C_in*kh*kw = 36
    alpha, beta = layer.weight_binary_set()
    flat = w.reshape(4, 9).double()
    torch.testing.assert_close(beta.double(), flat.mean(1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        alpha.double(), flat.std(1, correction=0).clamp_min(1e-5), rtol=1e-6, atol=1e-7
    )
    x = torch.randn(1, 4, 5, 5)
    ref = torch.cat(
        [
            F.conv2d(layer.binarize_input(x)[:, c : c + 1], _hand_weight(w)[c : c + 1], padding=1)
            for c in range(4)
        ],
        dim=1,
    )
    torch.testing.assert_close(layer(x), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_linear_matches_f_linear_on_hand_binarized_tensors(form):
    torch.manual_seed(3)
    layer = _randomize_act(AdaBinLinear(7, 5, act_form=form), 1.5, -0.25)
    x = torch.randn(3, 4, 7)  # (N, L, C) tokens
    ref = F.linear(
        _hand_input(x, 1.5, -0.25, form), _hand_weight(layer.weight.detach()), layer.bias
    )
    assert torch.equal(layer(x), ref)


def test_baseline_layers_forward():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 5, 5)
    conv = SignConv2d(3, 4, 3)
    wb = torch.where(conv.weight >= 0, 1.0, -1.0)
    assert torch.equal(conv(x), F.conv2d(torch.where(x >= 0, 1.0, -1.0), wb, conv.bias))
    lin = XnorLinear(6, 2, bias=False)
    xl = torch.randn(4, 6)
    w = lin.weight.detach()
    wb = w.abs().mean(1, keepdim=True) * torch.where(w >= 0, 1.0, -1.0)
    assert torch.equal(lin(xl), F.linear(torch.where(xl >= 0, 1.0, -1.0), wb))
    assert "act_alpha" not in dict(lin.named_parameters()) and not hasattr(conv, "act_beta")


# ----------------------------------------------------------------------------- switches
def test_binarize_switches():
    torch.manual_seed(5)
    layer = _randomize_act(AdaBinConv2d(3, 4, 3, padding=1))
    x = torch.randn(2, 3, 6, 6)
    w = layer.weight.detach()
    wb = _hand_weight(w)
    xb = _hand_input(x, 0.75, 0.125)
    cases = {
        (True, True): F.conv2d(xb, wb, layer.bias, padding=1),
        (False, True): F.conv2d(xb, w, layer.bias, padding=1),
        (True, False): F.conv2d(x, wb, layer.bias, padding=1),
        (False, False): F.conv2d(x, w, layer.bias, padding=1),
    }
    for (bw, ba), ref in cases.items():
        layer.binarize_weights, layer.binarize_activations = bw, ba
        assert torch.equal(layer(x), ref), (bw, ba)
        r = repr(layer)
        assert ("weights=float" in r) == (not bw) and ("activations=float" in r) == (not ba)
    off = AdaBinLinear(4, 2, binarize_weights=False, binarize_activations=False)
    xl = torch.randn(3, 4)
    assert torch.equal(off(xl), F.linear(xl, off.weight, off.bias))
    # float weights still get gradients, and so do alpha_a/beta_a when activations are on
    layer.binarize_weights, layer.binarize_activations = False, True
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.act_alpha.grad is not None


def test_extra_repr_says_what_is_binarized():
    r = repr(AdaBinConv2d(3, 4, 3, weight_estimator="ede", act_form="code"))
    assert "weights=adabin(ede)" in r and "activations=adabin(code)" in r
    assert "3, 4, kernel_size=(3, 3)" in r
    r = repr(AdaBinLinear(3, 4))
    assert "in_features=3" in r and "weights=adabin(ste)" in r and "activations=adabin(paper)" in r
    assert "weights=sign" in repr(SignConv2d(2, 2, 1)) and "activations=sign" in repr(
        SignConv2d(2, 2, 1)
    )


# ----------------------------------------------------------------------------- from_float
@pytest.mark.parametrize("training", [True, False])
def test_conv_from_float_copies_exactly(training):
    torch.manual_seed(6)
    src = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, padding_mode="circular")
    src.train(training)
    layer = AdaBinConv2d.from_float(src, weight_estimator="ede")
    assert type(layer) is AdaBinConv2d and layer.training is training
    assert torch.equal(layer.weight, src.weight) and torch.equal(layer.bias, src.bias)
    assert layer.weight.data_ptr() != src.weight.data_ptr()  # a copy, not shared storage
    for attr in ("stride", "padding", "dilation", "groups", "padding_mode", "kernel_size"):
        assert getattr(layer, attr) == getattr(src, attr)
    assert layer.weight_estimator == "ede"


def test_linear_from_float_preserves_dtype_and_mode():
    src = nn.Linear(5, 3, bias=False, dtype=torch.float64).eval()
    layer = AdaBinLinear.from_float(src, act_form="code")
    assert layer.weight.dtype == torch.float64 and layer.bias is None and not layer.training
    assert torch.equal(layer.weight, src.weight) and layer.act_form == "code"
    bf = AdaBinConv2d.from_float(nn.Conv2d(2, 3, 1).to(torch.bfloat16))
    assert bf.weight.dtype == torch.bfloat16 and bf.bias.dtype == torch.bfloat16


def test_from_float_rejects_binary_and_wrong_type():
    with pytest.raises(ValueError, match="already binary"):
        AdaBinConv2d.from_float(AdaBinConv2d(2, 2, 1))
    with pytest.raises(ValueError, match="already binary"):
        AdaBinLinear.from_float(AdaBinLinear(2, 2))
    with pytest.raises(ValueError, match="already binary"):
        AdaBinConv2d.from_float(SignConv2d(2, 2, 1))
    with pytest.raises(TypeError, match=r"expects an nn\.Linear"):
        AdaBinLinear.from_float(nn.Conv2d(2, 2, 1))


# ----------------------------------------------------------------------------- deployment view
@pytest.mark.parametrize("method", ["adabin", "sign", "xnor"])
def test_signs_and_sets_reproduce_binary_weight(method):
    torch.manual_seed(7)
    layer = method_spec(method).conv(4, 6, 3, groups=2)
    with torch.no_grad():
        layer.weight[0, 0, 0, 0] = layer.weight[0].mean()  # a tie with beta_w (adabin)
    signs = layer.weight_signs()
    alpha, beta = layer.weight_binary_set()
    assert signs.dtype == torch.bool and signs.shape == layer.weight.shape
    assert alpha.shape == beta.shape == (6,)
    shape = (-1, 1, 1, 1)
    rebuilt = alpha.reshape(shape) * (2 * signs.to(alpha.dtype) - 1) + beta.reshape(shape)
    assert torch.equal(rebuilt, layer.binary_weight().detach())


@pytest.mark.parametrize("form", ["paper", "code"])
def test_input_signs_and_activation_set_reproduce_binarized_input(form):
    torch.manual_seed(8)
    layer = _randomize_act(AdaBinConv2d(3, 2, 1, act_form=form), 0.6, 0.3)
    x = torch.randn(2, 3, 4, 4)
    x[0, 0, 0, 0] = layer.act_beta.item()  # exactly beta -> +1
    s = layer.input_signs(x)
    alpha, center = layer.activation_binary_set()
    assert s[0, 0, 0, 0]
    rebuilt = alpha * (2 * s.to(x.dtype) - 1) + center
    assert torch.equal(rebuilt, layer.binarize_input(x))
    if form == "code":
        assert center == pytest.approx(0.6 * 0.3, rel=1e-6)
    for cls in (SignConv2d, XnorLinear):
        lay = cls(4, 4, 1) if cls is SignConv2d else cls(4, 4)
        xi = torch.randn(2, 4, 3, 3) if cls is SignConv2d else torch.randn(2, 4)
        a, c = lay.activation_binary_set()
        assert (a, c) == (1.0, 0.0)
        assert torch.equal(a * (2 * lay.input_signs(xi).float() - 1) + c, lay.binarize_input(xi))


@pytest.mark.parametrize("method", ["adabin", "sign", "xnor"])
@pytest.mark.parametrize("estimator", ["ste", "ede"])
def test_freeze_is_bit_identical(method, estimator):
    torch.manual_seed(9)
    layer = method_spec(method).conv(4, 6, 3, padding=1, groups=2, weight_estimator=estimator)
    if method == "adabin":
        _randomize_act(layer)
    x = torch.randn(2, 4, 6, 6)
    before = layer(x)
    signs, (alpha, beta) = layer.weight_signs(), layer.weight_binary_set()
    wb = layer.binary_weight().detach().clone()
    twin = copy.deepcopy(layer)
    layer.freeze()
    assert layer.frozen and "frozen" in repr(layer)
    assert torch.equal(layer(x), before)
    assert torch.equal(layer.weight, wb)
    assert torch.equal(layer.weight_signs(), signs)
    a2, b2 = layer.weight_binary_set()
    assert torch.equal(a2, alpha) and torch.equal(b2, beta)
    layer.freeze()  # idempotent
    assert torch.equal(layer(x), before)
    # set_binary_weight on a fresh copy gives the same bits
    twin.set_binary_weight(signs, alpha, beta)
    assert torch.equal(twin(x), before)


def test_set_binary_weight_on_linear_and_validation():
    torch.manual_seed(10)
    layer = AdaBinLinear(6, 3)
    x = torch.randn(4, 6)
    before = layer(x)
    signs, (alpha, beta) = layer.weight_signs(), layer.weight_binary_set()
    fresh = AdaBinLinear(6, 3)
    with torch.no_grad():
        fresh.bias.copy_(layer.bias)
    fresh.set_binary_weight(signs, alpha, beta)
    assert torch.equal(fresh(x), before)
    with pytest.raises(ValueError, match="shape"):
        AdaBinLinear(6, 3).set_binary_weight(signs.t(), alpha, beta)
    with pytest.raises(ValueError, match="3 entries"):
        AdaBinLinear(6, 3).set_binary_weight(signs, alpha[:2], beta)


def test_gradients_reach_every_parameter():
    torch.manual_seed(11)
    net = nn.Sequential(AdaBinConv2d(3, 4, 3, padding=1), Maxout(4))
    net(torch.randn(2, 3, 5, 5)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
