"""Checks shared by the deploy and detector-deploy tests: a deployed model against the
fake-quantized one, per output and per packed layer, within the documented float bound."""

from __future__ import annotations

import torch

import autobin
from autobin.deploy import DeployedModel, PackedConv2d


def assert_within_bound(y: torch.Tensor, ref: torch.Tensor, bound: torch.Tensor, dim: int = 1):
    """``|y - ref| <= bound`` per output channel (channels at ``dim``)."""
    assert y.shape == ref.shape
    shape = [1] * y.dim()
    shape[dim] = -1
    err = (y.double() - ref.double()).abs()
    limit = bound.reshape(shape).to(err)
    over = err > limit
    assert not over.any(), (
        f"{int(over.sum())} outputs exceed the bound: error {float(err[over].max()):.3g}, "
        f"bound there {float(limit.expand_as(err)[over].min()):.3g}"
    )


def _captures(model: torch.nn.Module, names, x):
    """Inputs of the named layers and outputs of the modules whose output they stand for."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if name in names:
            hooks.append(module.register_forward_hook(
                lambda m, a, out, name=name: seen.__setitem__(name, (a[0].detach(), out))
            ))  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def assert_layerwise_within_bound(fake: torch.nn.Module, fast: torch.nn.Module, x: torch.Tensor):
    """Every packed layer, fed the fake-quantized model's input to that layer, reproduces the
    fake-quantized layer's output (after its folded BatchNorm) within the stated bound.

    ``fast``: a :class:`DeployedModel`, or a model deployed in place (a detector)."""
    summary = fast.summary if isinstance(fast, DeployedModel) else autobin.info(fast).deployment
    root = fast.model if isinstance(fast, DeployedModel) else fast
    inputs = _captures(fake, set(summary.packed), x)
    outputs = _captures(fake, set(summary.folded_norms.values()), x)
    assert set(inputs) == set(summary.packed)
    modules = dict(root.named_modules())
    for name in summary.packed:
        packed = modules[name]
        layer_in, layer_out = inputs[name]
        if name in summary.folded_norms:
            layer_out = outputs[summary.folded_norms[name]][1]
        bound = packed.error_bound
        if name in summary.residuals:  # the graph's add, now inside the packed layer
            layer_out = layer_out + layer_in
            bound = bound + 2.0**-22 * float(layer_out.abs().max())
        y = packed.conv_output(layer_in) if isinstance(packed, PackedConv2d) else packed(layer_in)
        dim = 1 if isinstance(packed, PackedConv2d) else -1
        assert_within_bound(y, layer_out, bound, dim=dim)
