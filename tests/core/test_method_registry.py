"""One table of methods: every part of autobin that varies by method reads it.

The fourth method here is defined in the test (one class pair plus one registration) and is then
usable by a recipe, the graph rewrite, the report and the zoo's packed format without any other
change: that is the extension contract of autobin.nn.registry.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import autobin
from autobin.nn import (
    METHODS,
    AdaBinConv2d,
    AdaBinLinear,
    BinaryConv2d,
    BinaryLayer,
    BinaryLinear,
    MethodSpec,
    SignConv2d,
    SignLinear,
    XnorConv2d,
    XnorLinear,
    method_spec,
    register_method,
    registry,
)
from autobin.nn.sign import SignBinarizers
from autobin.recipes import Recipe
from autobin.zoo.format import load_packed_state, packed_state


def test_table_holds_the_public_classes():
    expected = {
        "adabin": (AdaBinConv2d, AdaBinLinear),
        "sign": (SignConv2d, SignLinear),
        "xnor": (XnorConv2d, XnorLinear),
    }
    assert {name: (s.conv, s.linear) for name, s in METHODS.items()} == expected
    for spec in METHODS.values():
        assert issubclass(spec.conv, BinaryConv2d) and issubclass(spec.linear, BinaryLinear)
        assert spec.conv.method == spec.linear.method == spec.name
    assert method_spec("adabin").scalar_params == ("act_alpha", "act_beta")
    assert method_spec("xnor").scalar_params == ()


@pytest.mark.parametrize("recipe", ["adabin", "bnn", "xnor"])
def test_binarized_layers_are_instances_of_the_public_classes(recipe):
    model = timm.create_model("resnet18", num_classes=10)
    bnn = autobin.binarize(model, recipe)
    spec = method_spec(autobin.load_recipe(recipe).defaults.method)
    layers = [m for m in bnn.modules() if isinstance(m, BinaryLayer)]
    assert len(layers) == 16
    assert all(type(m) is spec.conv for m in layers)


class AbsMaxBinarizers(SignBinarizers):
    """A fourth method for the test: Wb = max|W[o]| * sgn(W), ab = sgn(x)."""

    method = "absmax"

    def _binarize_weight(self) -> torch.Tensor:
        alpha, _ = self._latent_weight_set()
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        return torch.where(self.weight >= 0, 1.0, -1.0) * alpha.reshape(shape)

    def _latent_weight_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.weight.abs().amax(dim=tuple(range(1, self.weight.dim())))
        return alpha, torch.zeros_like(alpha)


class AbsMaxConv2d(AbsMaxBinarizers, BinaryConv2d):
    pass


class AbsMaxLinear(AbsMaxBinarizers, BinaryLinear):
    pass


@pytest.fixture
def absmax(monkeypatch):
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "METHODS", registry.MappingProxyType(registry._METHODS))
    return register_method(MethodSpec("absmax", AbsMaxConv2d, AbsMaxLinear, "test method"))


def test_a_fourth_method_is_one_class_pair_and_one_registration(absmax):
    data = autobin.load_recipe("adabin").to_dict()
    data["name"], data["defaults"]["method"] = "absmax-test", "absmax"
    del data["defaults"]["act_form"]
    recipe = Recipe.from_dict(data)
    model = timm.create_model("resnet18", num_classes=10).eval()
    bnn = autobin.binarize(model, recipe).eval()
    layers = {n: m for n, m in bnn.named_modules() if isinstance(m, BinaryLayer)}
    assert len(layers) == 16 and all(type(m) is AbsMaxConv2d for m in layers.values())
    # the layer computes its method's math
    layer = next(iter(layers.values()))
    x = torch.randn(1, layer.in_channels, 8, 8)
    w = layer.weight.detach()
    wb = torch.where(w >= 0, 1.0, -1.0) * w.abs().amax(dim=(1, 2, 3), keepdim=True)
    ref = F.conv2d(torch.where(x >= 0, 1.0, -1.0), wb, None, layer.stride, layer.padding)
    assert torch.equal(layer(x), ref)
    # the report names it and counts no learned scalars for it
    report = autobin.info(bnn).report
    assert "binarize (absmax)" in str(report)
    # the zoo's packed format stores and restores it bit-exactly
    tensors, metadata = packed_state(bnn)
    twin = autobin.binarize(timm.create_model("resnet18", num_classes=10), recipe).eval()
    load_packed_state(twin, tensors, metadata)
    inp = torch.randn(2, 3, 64, 64)
    assert torch.equal(twin(inp), bnn(inp))


def test_a_recipe_naming_an_unregistered_method_lists_the_table():
    with pytest.raises(autobin.RecipeError) as err:
        Recipe.from_dict({"schema_version": 1, "name": "x", "defaults": {"method": "absmax"}})
    assert "absmax" in str(err.value) and "adabin | sign | xnor" in str(err.value)


def test_registering_twice_or_with_a_mismatched_name_is_refused(absmax):
    with pytest.raises(ValueError, match="already registered"):
        register_method(absmax)
    with pytest.raises(ValueError, match="not the registered name"):
        register_method(MethodSpec("other", AbsMaxConv2d, AbsMaxLinear, "x"))
