"""torch.compile: the binarizers and Maxout trace without graph breaks and compute the same math.

The eager autograd functions in :mod:`autobin.quantizers` and :mod:`autobin.nn.maxout` are the
single source of truth; the compiled (fused) path is checked against them on the CPU.
"""

from __future__ import annotations

import copy
import functools

import pytest
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
        # a partial, not a lambda with a default argument: torch 2.11's dynamo does not guard on
        # a lambda's defaults and would rerun the "paper" graph for "code"
        _fused_vs_eager(functools.partial(adabin_activation, form=form), x, alpha, beta)


def test_fused_maxout_matches_the_layer() -> None:
    torch.manual_seed(0)
    gp = torch.empty(8).uniform_(0.5, 1.5).requires_grad_()
    gn = torch.empty(8).uniform_(-0.5, 0.5).requires_grad_()
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    _fused_vs_eager(lambda x, gp, gn: _MaxoutFn.apply(x, gp, gn, 1), x, gp, gn)


_ON_CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "device"),
    [
        ("adabin", "cpu"),
        ("adabin-reference", "cpu"),
        ("bnn", "cpu"),
        ("xnor", "cpu"),
        pytest.param("adabin", "cuda", marks=_ON_CUDA),
    ],
)
def test_compiled_student_gradients_match_eager(recipe: str, device: str) -> None:
    """Every parameter of a compiled binary resnet18 gets the eager gradient (float64).

    Guards the whole training graph, not only each autograd function alone: on torch 2.11 an
    in-place update inside a fused forward made compiled autograd skip the custom backward, so
    every gradient upstream of the first binarizer came out zero while the forward was exact.
    """
    torch.manual_seed(0)
    # zero_init_last=False: timm zeroes the last BatchNorm of each block, which would leave the
    # second conv of every block with a zero gradient in both runs and hide a broken backward.
    model = timm.create_model("resnet18", num_classes=10, in_chans=1, zero_init_last=False)
    eager = autobin.binarize(model, recipe, example_inputs=(torch.zeros(2, 1, 28, 28),))
    eager = eager.to(device, torch.float64).train().to(memory_format=torch.channels_last)
    fused = copy.deepcopy(eager)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.tensor([1, 2, 3, 4], device=device)

    def step(m: torch.nn.Module) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m(x), y)

    step(eager).backward()
    torch.compile(lambda: step(fused), fullgraph=True)().backward()
    grads = {n: p.grad for n, p in fused.named_parameters()}
    for name, p in eager.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name  # the check can fail
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-7, atol=1e-9, msg=name)


def _saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the batch-shaped tensors a compiled training forward keeps for backward."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4 and t.shape[0] == x.shape[0]:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    compiled = torch.compile(model)
    with torch.autocast("cpu", torch.bfloat16):
        compiled(x)  # compile outside the hooks
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            compiled(x)
    return sum(saved.values())


@pytest.mark.slow
def test_compiled_student_keeps_no_more_activations_than_the_float_model() -> None:
    """The binary input of every binary conv is recomputed in backward, not saved (autobin/nn/
    fused.py), and Maxout and the binarizers leave the rest to the partitioner: the compiled
    adabin resnet18 keeps about what the float resnet18 keeps (the memory goal of the GPU path).
    """
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    float_model = timm.create_model("resnet18").train().to(memory_format=torch.channels_last)
    student = autobin.binarize(timm.create_model("resnet18"), example_inputs=(x,)).train()
    student = student.to(memory_format=torch.channels_last)
    ratio = _saved_activation_bytes(student, x) / _saved_activation_bytes(float_model, x)
    assert ratio <= 1.1, f"compiled adabin keeps {ratio:.2f}x the float model's activations"
