"""torch.compile: the binarizers and Maxout trace without graph breaks and compute the same math.

The eager autograd functions in :mod:`autobin.quantizers` and :mod:`autobin.nn.maxout` are the
single source of truth; the compiled (fused) path is checked against them on the CPU.
"""

from __future__ import annotations

import timm
import torch

import autobin
from autobin.nn import Maxout
from autobin.quantizers import adabin_activation


def test_resnet18_adabin_compiles_without_graph_breaks() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1)
    student = autobin.binarize(model, example_inputs=(torch.zeros(2, 1, 28, 28),))
    student.train().to(memory_format=torch.channels_last)  # the layout training uses on CUDA
    x = torch.randn(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    explanation = torch._dynamo.explain(student)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def _fused_vs_eager(fn, *inputs: torch.Tensor) -> None:
    eager_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    fused_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    eager_out = fn(*eager_in)
    fused_out = torch.compile(fn, fullgraph=True)(*fused_in)
    assert torch.equal(eager_out, fused_out)  # the forward is exact: two values per set
    grad = torch.randn_like(eager_out)
    eager_out.backward(grad)
    fused_out.backward(grad)
    for a, b in zip(eager_in, fused_in, strict=True):
        if a.requires_grad:  # sums may be reordered by the fused kernels
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)


def test_fused_activation_binarizer_matches_the_quantizer() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    alpha = torch.tensor(0.7, requires_grad=True)
    beta = torch.tensor(0.1, requires_grad=True)
    for form in ("paper", "code"):
        _fused_vs_eager(lambda x, a, b, f=form: adabin_activation(x, a, b, f), x, alpha, beta)


def test_fused_maxout_matches_the_layer() -> None:
    torch.manual_seed(0)
    layer = Maxout(8)
    with torch.no_grad():
        layer.gamma_pos.uniform_(0.5, 1.5)
        layer.gamma_neg.uniform_(-0.5, 0.5)
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    eager = layer(x.detach().clone())
    fused = torch.compile(layer, fullgraph=True)(x.detach().clone())
    assert torch.equal(eager, fused)
    x1, x2 = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    grad = torch.randn_like(eager)
    layer(x1).backward(grad)
    g_eager = (x1.grad, layer.gamma_pos.grad.clone(), layer.gamma_neg.grad.clone())
    layer.zero_grad()
    torch.compile(layer, fullgraph=True)(x2).backward(grad)
    g_fused = (x2.grad, layer.gamma_pos.grad, layer.gamma_neg.grad)
    for a, b in zip(g_eager, g_fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert x2.grad.is_contiguous(memory_format=torch.channels_last)  # layout preserved
