"""Shared helpers of the deploy tests: binary layers with chosen sets, the kernel paths here."""

from __future__ import annotations

import pytest
import torch

from autobin.deploy import available_kernels
from autobin.nn import METHODS

PATHS = available_kernels()  # builds the kernels once per test process (cached on disk)
COMPILED = [p for p in PATHS if p != "reference"]


@pytest.fixture(params=PATHS)
def kernel_path(request) -> str:
    """Every kernel path this machine supports, the reference included."""
    return request.param


def integer_conv(cin, cout, k, s, p, d, g, *, seed, bias=True, form="paper"):
    """AdaBin conv whose binary sets and bias are small integers: every output is an integer.

    alpha_w = 1, beta_w in {-1, 0, 1}, alpha_a = 1, beta_a = 1 (threshold 1, c_a = 1 in both
    forms), bias in {-2..2}: the correction terms combine exactly in float32, so every kernel
    path must equal the reference bit for bit.
    """
    gen = torch.Generator().manual_seed(seed)
    layer = METHODS["adabin"].conv(cin, cout, k, s, p, d, g, bias=bias, act_form=form).eval()
    signs = torch.rand(layer.weight.shape, generator=gen) > 0.5
    beta = torch.randint(-1, 2, (cout,), generator=gen).float()
    with torch.no_grad():
        layer.act_alpha.fill_(1.0)
        layer.act_beta.fill_(1.0)
        if bias:
            layer.bias.copy_(torch.randint(-2, 3, (cout,), generator=gen).float())
    layer.set_binary_weight(signs, torch.ones(cout), beta)
    return layer


def random_conv(cin, cout, k, s, p, d, g, *, seed, form="paper", method="adabin"):
    """Binary conv with random latent weights and a random activation set (not frozen)."""
    gen = torch.Generator().manual_seed(seed)
    layer = METHODS[method].conv(cin, cout, k, s, p, d, g, bias=True, act_form=form)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.1 + 0.02)
        layer.bias.copy_(torch.randn(cout, generator=gen))
        if method == "adabin":
            layer.act_alpha.fill_(0.5 + float(torch.rand((), generator=gen)))
            layer.act_beta.fill_(float(torch.randn((), generator=gen)) * 0.3)
    return layer.eval()


def random_linear(fin, fout, *, seed, form="paper", method="adabin"):
    gen = torch.Generator().manual_seed(seed)
    layer = METHODS[method].linear(fin, fout, act_form=form)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.1 - 0.03)
        layer.bias.copy_(torch.randn(fout, generator=gen))
        if method == "adabin":
            layer.act_alpha.fill_(0.8)
            layer.act_beta.fill_(-0.2)
    return layer.eval()
