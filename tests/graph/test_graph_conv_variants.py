"""timm's conv variants keep their semantics when binarized; parallel branches are main path
unless a heavier branch sits beside them."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import Conv2dSame, ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d, StdConv2dSame
from torch import nn

import autobin
from autobin.graph import binarize, explain
from autobin.nn import BinaryConv2d, BinaryLayer

VARIANTS = [
    (Conv2dSame, {}),
    (StdConv2d, {"padding": 1}),
    (StdConv2dSame, {}),
    (ScaledStdConv2d, {"padding": 1}),
    (ScaledStdConv2dSame, {}),
]


class Net(nn.Module):
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.conv = conv
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.head(self.conv(self.stem(x)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=lambda v: getattr(v, "__name__", ""))
def test_variant_computes_the_same_with_binarization_off(cls, kwargs, stride):
    torch.manual_seed(0)
    conv = cls(4, 6, 3, stride=stride, **kwargs)
    if hasattr(conv, "gain"):
        nn.init.uniform_(conv.gain, 0.5, 2.0)
    model = Net(conv).eval()
    x = torch.randn(2, 4, 11, 13)  # odd sizes: "same" padding depends on them
    result = binarize(model, "adabin", example_inputs=x)
    layer = result.get_submodule("conv")
    assert isinstance(layer, BinaryConv2d)
    layer.binarize_weights = layer.binarize_activations = False  # the latent float layer
    with torch.no_grad():
        expected, got = model(x), result.eval()(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        y = torch.randn(1, 4, 17, 9)  # another input size: padding follows it as in the float
        torch.testing.assert_close(result(y), model(y), rtol=1e-5, atol=1e-5)


class CustomConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x).tanh()


def test_conv_subclass_with_its_own_forward_stays_float():
    model = Net(CustomConv(4, 6, 3, padding=1))
    report = explain(model, example_inputs=torch.randn(1, 4, 8, 8))
    entry = next(e for e in report.entries if e.name == "conv")
    assert (entry.decision, entry.rule) == ("float", "unsupported")
    assert "CustomConv overrides the forward of Conv2d" in entry.reason


@pytest.mark.slow
def test_dm_nfnet_f0_runs_at_its_own_input_size():
    model = timm.create_model("dm_nfnet_f0", num_classes=10)
    result = binarize(model)
    assert autobin.info(result).report.input_shape == (3, 192, 192)  # its pretrained_cfg size
    assert autobin.info(result).report.totals["binary_mac_share"] > 0.9
    for size in (192, 256, 203):  # train, test and an odd size: "same" padding follows them
        assert result(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_mobileone_parallel_pointwise_branches_are_main_path():
    model = timm.create_model("mobileone_s0", num_classes=10)
    report = explain(model, example_inputs=torch.randn(1, 3, 64, 64))
    decided = {e.name: e for e in report.entries if e.kind == "conv"}
    # the pointwise stage of a block: parallel 1x1 convs of equal weight, summed
    pw = [n for n in decided if n.startswith("stages.1.1.conv_kxk.")]
    assert pw and all(decided[n].decision == "binarize" for n in pw)
    # the 1x1 scale branch beside a 3x3 branch is lighter: a shortcut, kept float
    assert "shortcut" in decided["stages.1.0.conv_scale.conv"].reason
    assert report.totals["binary_mac_share"] > 0.8


@pytest.mark.parametrize(("arch", "shortcuts"), [("resnet50", 4), ("repvgg_a0", 21)])
def test_lighter_parallel_1x1_branches_stay_shortcuts(arch, shortcuts):
    model = timm.create_model(arch, num_classes=10)
    report = explain(model, example_inputs=torch.randn(1, 3, 64, 64))
    found = [e for e in report.entries if e.kind == "conv" and "shortcut" in e.reason]
    assert len(found) == shortcuts and all(e.decision == "float" for e in found)
    assert not any(isinstance(m, BinaryLayer) for m in model.modules())
