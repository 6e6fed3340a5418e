"""Maxout (ADABIN.md section 4): values, exact gradients, layouts."""

from __future__ import annotations

import pytest
import torch

from autobin.nn import Maxout
from autobin.nn.maxout import _MaxoutFn

F64 = torch.float64


def _ref(x, gp, gn, dim):
    shape = [1] * x.dim()
    shape[dim] = -1
    gp, gn = gp.reshape(shape), gn.reshape(shape)
    return gp * x.clamp_min(0) - gn * (-x).clamp_min(0)


def _set_slopes(m, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.gamma_pos.copy_(torch.rand(m.num_channels, generator=gen) + 0.5)
        m.gamma_neg.copy_(torch.rand(m.num_channels, generator=gen) - 0.25)
    return m


def test_init_and_hand_values():
    m = Maxout(2)
    assert torch.equal(m.gamma_pos, torch.ones(2)) and torch.equal(
        m.gamma_neg, torch.full((2,), 0.25)
    )
    x = torch.tensor([[-2.0, 4.0], [0.0, -1.0]])  # (N, C)
    with torch.no_grad():
        m.gamma_pos.copy_(torch.tensor([0.5, 2.0]))
        m.gamma_neg.copy_(torch.tensor([0.25, 0.125]))
    # ch0: -2 -> -0.25*2 = -0.5 ; 0 -> 0 ; ch1: 4 -> 8 ; -1 -> -0.125
    assert torch.equal(m(x), torch.tensor([[-0.5, 8.0], [0.0, -0.125]]))


@pytest.mark.parametrize(
    "shape,channel_dim,dim",
    [
        ((2, 5, 3, 4), None, 1),  # NCHW
        ((2, 7, 5), None, 2),  # (N, L, C) tokens
        ((4, 5), None, 1),  # (N, C)
        ((2, 3, 4, 5), -1, 3),  # NHWC
        ((2, 5, 7), 1, 1),  # (N, C, L)
    ],
)
def test_layouts_match_reference(shape, channel_dim, dim):
    torch.manual_seed(1)
    x = torch.randn(shape)
    m = _set_slopes(Maxout(shape[dim], channel_dim=channel_dim))
    # exact: each element is one product (the other branch's term is an exact zero)
    assert torch.equal(m(x), _ref(x, m.gamma_pos, m.gamma_neg, dim))


def test_channels_last_memory_format_nchw():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3).to(memory_format=torch.channels_last)
    m = _set_slopes(Maxout(4))
    assert torch.equal(m(x), _ref(x.contiguous(), m.gamma_pos, m.gamma_neg, 1))


@pytest.mark.parametrize("shape,dim", [((2, 4, 3, 3), 1), ((3, 6, 4), 2)])
def test_gradients_exact(shape, dim):
    torch.manual_seed(3)
    x = torch.randn(shape, dtype=F64)
    x.view(-1)[0] = 0.0  # x = 0 counts on the positive side, with derivative gamma_pos
    m = _set_slopes(Maxout(shape[dim], dtype=F64))
    g = torch.randn(shape, dtype=F64)
    xr = x.clone().requires_grad_()
    gx, gp, gn = torch.autograd.grad(m(xr), (xr, m.gamma_pos, m.gamma_neg), g)
    bshape = [1] * len(shape)
    bshape[dim] = -1
    pos = x >= 0
    exp_gx = g * torch.where(pos, m.gamma_pos.reshape(bshape), m.gamma_neg.reshape(bshape))
    red = [d for d in range(len(shape)) if d != dim]
    exp_gp = (g * x.clamp_min(0)).sum(red)
    exp_gn = (g * -(-x).clamp_min(0)).sum(red)
    assert torch.equal(gx, exp_gx)
    torch.testing.assert_close(gp, exp_gp, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(gn, exp_gn, rtol=1e-13, atol=1e-13)
    assert gp.dtype == gn.dtype == F64


@pytest.mark.parametrize("shape,channel_dim", [((2, 3, 2, 2), None), ((2, 4, 3), None)])
def test_gradcheck_away_from_zero(shape, channel_dim):
    torch.manual_seed(4)
    x = torch.randn(shape, dtype=F64)
    x = torch.where(x.abs() < 0.1, x.sign() * 0.1 + x, x).requires_grad_()  # |x| >= 0.1
    c = shape[1] if len(shape) == 4 else shape[-1]
    m = _set_slopes(Maxout(c, channel_dim=channel_dim, dtype=F64))
    dim = m._dim(x)

    def f(inp, gp, gn):
        return _MaxoutFn.apply(inp, gp, gn, dim)

    gp = m.gamma_pos.detach().clone().requires_grad_()
    gn = m.gamma_neg.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, gp, gn), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_float64_param_grads_not_truncated_to_float32():
    # Regression: the slope gradients used to be accumulated in float32 for float64 inputs.
    x = torch.full((1, 1, 1000), 0.1, dtype=F64) + torch.arange(1000, dtype=F64) * 1e-9
    m = Maxout(1000, dtype=F64)
    m(x).sum().backward()
    torch.testing.assert_close(m.gamma_pos.grad, x.reshape(-1), rtol=1e-15, atol=0)


def test_extra_repr():
    assert "channels=last dim" in repr(Maxout(4, channel_dim=-1))
    assert "4, channels=auto" in repr(Maxout(4))
