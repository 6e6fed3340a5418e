"""autobin.binarize beyond resnet18: plain modules, functional activations, partial tracing,
transformers, dynamic padding, RepVGG's parallel branches."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import fx, nn

import autobin
from autobin.errors import BinarizeError
from autobin.graph import binarize, explain
from autobin.nn import BinaryConv2d, BinaryLayer, BinaryLinear, Maxout


def _modules_of(model: nn.Module, cls) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, cls)}


class Block(nn.Module):
    """conv-bn-relu with a same-shape conv and a functional activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


class FunctionalNet(nn.Module):
    """No pretrained_cfg; activations only as F.relu, torch.relu and Tensor.relu."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv2(x).relu()
        x = self.conv3(x)
        return self.fc(x.mean((2, 3)))


class DataDependentNet(nn.Module):
    """The root forward branches on tensor values: it cannot be traced as a whole."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.head = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)])

    def forward(self, x):
        x = self.act(self.stem(x))
        if x.mean() > 0:  # data-dependent Python control flow
            x = x * 2
        x = self.blocks(x)
        x = self.head[0](x).mean((2, 3))
        return self.head[1](x)


def _x(*shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------- plain modules
class FlattenNet(nn.Module):
    """Its head flattens a fixed 8x8 map: only 8x8 inputs run."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.stem(x).flatten(1))


def test_plain_module_input_is_inferred_from_its_first_conv():
    report = explain(FunctionalNet())
    assert report.input_shape == (3, 224, 224)  # channels of the stem, the default image size
    assert report.totals["binarized_layers"] == 3


def test_failing_example_forward_says_how_to_pass_example_inputs():
    model = FlattenNet()
    assert explain(model, example_inputs=_x(1, 2, 8, 8)).input_shape == (2, 8, 8)
    for call in (binarize, explain):
        with pytest.raises(BinarizeError) as err:
            call(model)
        msg = str(err.value)
        assert "[(1, 2, 224, 224)]" in msg and "example_inputs=" in msg and "--input-size" in msg
        assert isinstance(err.value, ValueError)


def test_plain_module_with_example_inputs_and_functional_activations():
    model = FunctionalNet()
    x = _x(2, 3, 16, 16)
    result = binarize(model, example_inputs=x)
    assert isinstance(result, fx.GraphModule)
    assert sorted(_modules_of(result, BinaryLayer)) == ["conv1", "conv2", "conv3"]
    report = autobin.info(result).report
    acts = report.layers(kind="activation")
    assert [e.type_name for e in acts] == [
        "torch.nn.functional.relu",
        "torch.relu",
        "Tensor.relu",
    ]
    assert all(e.decision == "maxout" and e.handled_by == "graph" for e in acts)
    assert [e.channels for e in acts] == [8, 8, 16]
    maxouts = _modules_of(result, Maxout)
    assert sorted(m.num_channels for m in maxouts.values()) == [8, 8, 16]
    # no relu is left in the graph
    for node in result.graph.nodes:
        assert node.target not in (F.relu, torch.relu, "relu"), node
    assert report.totals["maxout"] == len(maxouts) == 3
    assert report.totals["handled_by"] == {"graph": 3 + 3 + 2}  # layers, maxouts, shortcuts
    out = result(x)
    assert out.shape == model(x).shape == (2, 4)
    out.sum().backward()
    assert all(m.gamma_pos.grad is not None for m in maxouts.values())
    # a tuple of inputs works the same as a tensor
    again = binarize(model, example_inputs=(x,))
    assert autobin.info(again).report.to_dict() == report.to_dict()


def test_untraceable_root_is_traced_child_by_child():
    model = DataDependentNet()
    x = _x(2, 3, 16, 16)
    result = binarize(model, example_inputs=x)
    report = autobin.info(result).report
    regions = {r["name"]: r for r in report.regions}
    assert regions["<root>"]["traced"] is False
    assert "control flow" in regions["<root>"]["error"]
    assert regions["blocks"]["traced"] is True
    assert [name for name, r in regions.items() if not r["traced"]] == ["<root>"]
    assert "untraced: <root>" in str(report)
    assert report.totals["untraced_regions"] == 1

    # the children are still binarized: graph-rewritten in the traced Sequential, module
    # replacement in the eager root (and in the ModuleList)
    assert isinstance(result, DataDependentNet)
    assert isinstance(result.blocks, fx.GraphModule)
    assert sorted(_modules_of(result, BinaryLayer)) == [
        "blocks.0.conv",
        "blocks.1.conv",
        "head.0",
    ]
    by_name = {e.name: e for e in report.entries}
    assert by_name["blocks.0.conv"].handled_by == "graph"
    assert by_name["head.0"].handled_by == "module"
    assert by_name["act"].handled_by == "module" and isinstance(result.act, Maxout)
    functional = [e for e in report.layers("maxout") if e.name.startswith("blocks.")]
    assert len(functional) == 2 and all(e.handled_by == "graph" for e in functional)
    shortcuts = report.layers("shortcut")
    assert [e.name for e in shortcuts] == ["blocks.0.conv+shortcut", "blocks.1.conv+shortcut"]
    assert by_name["head.0+shortcut"].decision == "left alone"
    assert len(_modules_of(result, Maxout)) == report.totals["maxout"] == 3
    out = result(x)
    assert out.shape == (2, 4)
    out.sum().backward()


# ------------------------------------------------------------------------------- timm models
def test_vit_adabin_full_binarizes_the_block_linears():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    result = binarize(model, "adabin-full")
    binary = _modules_of(result, BinaryLayer)
    expected = {
        f"blocks.{i}.{layer}"
        for i in range(12)
        for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    }
    assert set(binary) == expected
    assert all(isinstance(m, BinaryLinear) for m in binary.values())
    assert type(result.get_submodule("patch_embed.proj")) is nn.Conv2d
    assert type(result.get_submodule("head")) is nn.Linear
    maxouts = _modules_of(result, Maxout)
    assert set(maxouts) == {f"blocks.{i}.mlp.act" for i in range(12)}
    assert all(m.num_channels == 768 and m.channel_dim == -1 for m in maxouts.values())
    x = _x(1, 3, 224, 224)
    out = result(x)
    assert out.shape == (1, 10)
    out.sum().backward()
    assert all(m.weight.grad is not None for m in binary.values())


def _feature_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape of every conv (float or binary) in one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(_module, _args, output):
            shapes[name] = tuple(output.shape)

        return hook

    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    handles = [m.register_forward_hook(record(n)) for n, m in convs.items()]
    try:
        with torch.no_grad():
            shapes["<output>"] = tuple(model(x).shape)
    finally:
        for h in handles:
            h.remove()
    return shapes


@pytest.mark.parametrize("arch", ["tf_efficientnet_b0", "tf_efficientnetv2_b0"])
def test_conv2d_same_models_keep_the_float_shapes(arch):
    model = timm.create_model(arch, pretrained=False, num_classes=10).eval()
    result = binarize(model).eval()
    same = [n for n, m in result.named_modules() if type(m).__name__ == "Conv2dSame"]
    binary_same = [
        n
        for n, m in result.named_modules()
        if isinstance(m, BinaryConv2d) and m.dynamic_same_padding
    ]
    if arch == "tf_efficientnetv2_b0":  # its strided 3x3 FusedMBConv convs are Conv2dSame
        assert binary_same == ["blocks.1.0.conv_exp", "blocks.2.0.conv_exp"]
    assert same, "the float Conv2dSame layers (stem, depthwise) stay as they are"
    for size in (224, 193):  # 193: odd, where static padding would change the shapes
        x = _x(1, 3, size, size)
        assert _feature_shapes(result, x) == _feature_shapes(model, x)


def test_repvgg_parallel_3x3_branch_is_binarized():
    model = timm.create_model("repvgg_a0", pretrained=False, num_classes=10)
    report = explain(model)
    by_name = {e.name: e for e in report.layers(kind="conv")}
    kxk = [n for n in by_name if n.startswith("stages.") and n.endswith("conv_kxk.conv")]
    one = [n for n in by_name if n.startswith("stages.") and n.endswith("conv_1x1.conv")]
    assert len(kxk) == len(one) == 21
    assert all(by_name[n].decision == "binarize" for n in kxk)
    assert all(by_name[n].decision == "float" and by_name[n].rule == "shortcut" for n in one)
    # both stem branches read the image: both are the stem
    assert by_name["stem.conv_kxk.conv"].rule == by_name["stem.conv_1x1.conv"].rule == "stem"
    assert report.totals["binarized_layers"] == 21
    assert report.totals["binary_mac_share"] > 0.8


class SharedReLUNet(nn.Module):
    """One ReLU module called after convs of different widths (as in DLA's bottleneck)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.relu(self.stem(x))
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def test_shared_activation_module_gets_a_maxout_per_call_site():
    model = SharedReLUNet()
    x = _x(2, 3, 8, 8)
    result = binarize(model, example_inputs=x)
    report = autobin.info(result).report
    acts = report.layers(kind="activation")
    assert [e.name for e in acts] == ["relu@relu", "relu@relu_1", "relu@relu_2"]
    assert [e.channels for e in acts] == [8, 16, 16]
    assert all(e.decision == "maxout" and e.handled_by == "graph" for e in acts)
    maxouts = _modules_of(result, Maxout)
    assert sorted(m.num_channels for m in maxouts.values()) == [8, 16, 16]
    assert report.totals["maxout"] == len(maxouts) == 3
    assert not any(n.target == "relu" for n in result.graph.nodes if n.op == "call_module")
    out = result(x)
    out.sum().backward()
    assert all(m.gamma_neg.grad is not None for m in maxouts.values())
