"""torch.compile: the binarizers and Maxout trace without graph breaks and compute the same math.

The eager autograd functions in :mod:`autobin.quantizers` and :mod:`autobin.nn.maxout` are the
single source of truth; the compiled (fused) path is checked against them on the CPU.
"""

from __future__ import annotations

import timm
import torch

import autobin
from autobin.nn.maxout import _MaxoutFn
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
    """``fn`` eager and compiled: equal outputs, close gradients of a weighted-sum loss.

    The loss is reduced inside the compiled function, as in training (where the binarizers sit
    inside one compiled graph and only the scalar loss is differentiated from outside).
    """
    torch.manual_seed(1)
    weight = torch.randn_like(fn(*inputs))

    def loss(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = fn(*args)
        return out, (out * weight).sum()

    eager_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    fused_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    eager_out, eager_loss = loss(*eager_in)
    fused_out, fused_loss = torch.compile(loss, fullgraph=True)(*fused_in)
    assert torch.equal(eager_out, fused_out)  # the forward is exact: two values per set
    eager_loss.backward()
    fused_loss.backward()
    for a, b in zip(eager_in, fused_in, strict=True):
        if a.requires_grad:  # sums may be reordered by the fused kernels
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)
            assert b.grad.stride() == a.grad.stride()  # layout preserved


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
    gp = torch.empty(8).uniform_(0.5, 1.5).requires_grad_()
    gn = torch.empty(8).uniform_(-0.5, 0.5).requires_grad_()
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    _fused_vs_eager(lambda x, gp, gn: _MaxoutFn.apply(x, gp, gn, 1), x, gp, gn)
