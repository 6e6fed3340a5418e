"""autobin.binarize over many timm architecture families (smallest variant of each).

Each model: binarize, forward and backward at batch 2 and the model's input size, output shape
equal to the float model's, and a report consistent with the layers actually replaced.
"""

from __future__ import annotations

import pytest
import timm
import torch
from graph_checks import packed_bytes
from torch import nn

import autobin
from autobin.graph import binarize
from autobin.nn import BinaryLayer, Maxout

slow = pytest.mark.slow

CNNS = [  # recipe adabin
    "resnet18",
    pytest.param("resnet18d", marks=slow),  # ResNet-D: AvgPool + 1x1 downsample, deep stem
    pytest.param("efficientnet_b0", marks=slow),
    "tf_efficientnet_b0",  # Conv2dSame (dynamic "SAME" padding)
    "mobilenetv3_small_100",
    "regnetx_002",
    "convnext_atto",
    pytest.param("densenet121", marks=slow),
    "dla46_c",
    pytest.param("ghostnet_100", marks=slow),
    "repvgg_a0",
    "cs3darknet_focus_s",  # CSPNet
    "nf_regnet_b0",  # NFNet family: ScaledStdConv2d, no norm layers
]
TRANSFORMERS = [  # recipe adabin-full
    pytest.param("vit_tiny_patch16_224", marks=slow),
    "deit_tiny_patch16_224",
    "mixer_s32_224",
    "levit_128s",
    pytest.param("efficientformer_l1", marks=slow),
    pytest.param("swin_tiny_patch4_window7_224", marks=slow),
    pytest.param("resmlp_12_224", marks=slow),
    pytest.param("poolformer_s12", marks=slow),
    "pit_ti_224",
    pytest.param("edgenext_xx_small", marks=slow),
]


def _case(entry) -> str:
    return entry.values[0] if hasattr(entry, "values") else entry


def _params(entries, recipe):
    out = []
    for entry in entries:
        marks = entry.marks if hasattr(entry, "marks") else ()
        out.append(pytest.param(_case(entry), recipe, marks=marks, id=_case(entry)))
    return out


def _maxout_call_sites(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Forward ``x``; return the output and how often each Maxout module was called."""
    calls: dict[str, int] = {}

    def record(name):
        def hook(_module, _args):
            calls[name] = calls.get(name, 0) + 1

        return hook

    handles = [
        m.register_forward_pre_hook(record(n))
        for n, m in model.named_modules()
        if isinstance(m, Maxout)
    ]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, calls


@pytest.mark.parametrize(
    ("arch", "recipe"), _params(CNNS, "adabin") + _params(TRANSFORMERS, "adabin-full")
)
def test_binarize_forward_backward(arch: str, recipe: str):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    x = torch.randn(
        2, *model.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(0)
    )
    result = binarize(model, recipe)
    report = autobin.info(result).report
    totals = report.totals

    with torch.no_grad():
        expected_shape = model.eval()(x).shape
    result.train()
    out, calls = _maxout_call_sites(result, x)
    assert out.shape == expected_shape == (2, 10)
    out.float().square().mean().backward()

    binary = {n: m for n, m in result.named_modules() if isinstance(m, BinaryLayer)}
    assert totals["binarized_layers"] == len(binary) > 0
    planned = {e.name for e in report.layers("binarize")}
    assert planned == set(binary)
    for name, layer in binary.items():
        assert layer.weight.grad is not None, name
        assert torch.isfinite(layer.weight.grad).all(), name
    # named_modules lists a Maxout shared by several call sites (same shape) once; the report
    # has one entry per replaced module or functional call, so the counts agree
    maxouts = {n: m for n, m in result.named_modules() if isinstance(m, Maxout)}
    assert totals["maxout"] == len(maxouts)
    assert set(calls) <= set(maxouts)
    assert totals["shortcuts"] == len(report.layers("shortcut"))
    assert totals["binary_mac_share"] > 0.5
    assert totals["ops"] == totals["bops"] / 64 + totals["flops"]
    assert totals["packed_size_bytes"] == packed_bytes(result)
