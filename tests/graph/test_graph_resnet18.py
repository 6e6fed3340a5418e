"""autobin.binarize on timm's resnet18: layer decisions, Maxout, gradients, report, behaviour."""

from __future__ import annotations

import json
import math
import operator

import pytest
import timm
import torch
from graph_checks import packed_bytes
from torch import fx, nn

import autobin
from autobin.graph import binarize, explain, float_model_of
from autobin.nn import BinaryLayer, Maxout, SignConv2d, XnorConv2d
from autobin.recipes import load_recipe

BLOCK_CONVS = [f"layer{n}.{m}.conv{k}" for n in (1, 2, 3, 4) for m in (0, 1) for k in (1, 2)]
FLOAT_CONVS = ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
STRIDED = {"layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"}  # stride 2 / channel change


def _resnet18(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=10)


def _input(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def float_model() -> nn.Module:
    return _resnet18()


@pytest.fixture(scope="module")
def binary_model(float_model) -> nn.Module:
    return binarize(float_model)


def _modules_of(model: nn.Module, cls) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, cls)}


# ------------------------------------------------------------------------------- layers
def test_exactly_the_block_convs_are_binarized(float_model, binary_model):
    assert sorted(_modules_of(binary_model, BinaryLayer)) == sorted(BLOCK_CONVS)
    for name in BLOCK_CONVS:
        layer = binary_model.get_submodule(name)
        assert layer.method == "adabin" and layer.kernel_size == (3, 3)
        torch.testing.assert_close(layer.weight, float_model.get_submodule(name).weight)
    for name in FLOAT_CONVS:
        assert type(binary_model.get_submodule(name)) is nn.Conv2d
    assert type(binary_model.get_submodule("fc")) is nn.Linear


def test_every_relu_becomes_maxout_with_the_channels_it_receives(float_model, binary_model):
    relus = _modules_of(float_model, nn.ReLU)
    assert len(relus) == 17
    maxouts = _modules_of(binary_model, Maxout)
    assert sorted(maxouts) == sorted(relus)
    assert not _modules_of(binary_model, nn.ReLU)

    seen: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(_module, args):
            seen.setdefault(name, tuple(args[0].shape))

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in maxouts.items()]
    try:
        binary_model.eval()
        with torch.no_grad():
            binary_model(_input(1))
    finally:
        for h in handles:
            h.remove()
    assert sorted(seen) == sorted(maxouts)
    for name, m in maxouts.items():
        assert m.channel_dim == 1
        assert m.num_channels == seen[name][1], name


def test_forward_backward_and_every_binary_parameter_gets_a_gradient(float_model, binary_model):
    binary_model.train()
    binary_model.zero_grad(set_to_none=True)
    x = _input()
    out = binary_model(x)
    with torch.no_grad():
        ref = float_model.eval()(x)
    assert out.shape == ref.shape == (2, 10)
    out.square().mean().backward()
    checked = 0
    for name, layer in _modules_of(binary_model, BinaryLayer).items():
        for pname in ("weight", "act_alpha", "act_beta"):
            grad = getattr(layer, pname).grad
            assert grad is not None, f"{name}.{pname}"
            assert torch.isfinite(grad).all(), f"{name}.{pname}"
            checked += 1
    for name, m in _modules_of(binary_model, Maxout).items():
        for pname in ("gamma_pos", "gamma_neg"):
            grad = getattr(m, pname).grad
            assert grad is not None and torch.isfinite(grad).all(), f"{name}.{pname}"
            checked += 1
    assert checked == 16 * 3 + 17 * 2
    binary_model.zero_grad(set_to_none=True)


def test_bireal_shortcuts_only_where_shapes_match(binary_model):
    report = autobin.info(binary_model).report
    shortcuts = {e.name.removesuffix("+shortcut") for e in report.layers("shortcut")}
    assert shortcuts == set(BLOCK_CONVS) - STRIDED
    # in the graph: add(bn(conv(x)), x) right after each of those convs
    gm = binary_model
    assert isinstance(gm, fx.GraphModule)
    found = set()
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in BLOCK_CONVS:
            (bn,) = node.users
            assert isinstance(gm.get_submodule(bn.target), nn.BatchNorm2d)
            adds = [u for u in bn.users if u.target is operator.add]
            if adds:
                assert adds[0].args == (bn, node.args[0])
                found.add(node.target)
    assert found == shortcuts


# ------------------------------------------------------------------------------- report
def test_explain_and_binarize_report_agree(float_model, binary_model):
    dry = explain(float_model)
    assert dry.to_dict() == autobin.info(binary_model).report.to_dict()


def test_report_totals_match_the_rewritten_model(float_model, binary_model):
    t = autobin.info(binary_model).report.totals
    assert t["binarized_layers"] == len(_modules_of(binary_model, BinaryLayer)) == 16
    assert t["maxout"] == len(_modules_of(binary_model, Maxout)) == 17
    assert t["shortcuts"] == 13
    assert t["float_layers"] == 5 and t["left_alone"] == 0
    assert t["untraced_regions"] == 0

    # binary MACs from conv shapes: out_h * out_w * out_c * in_c/groups * kh * kw per sample
    out_hw: dict[str, tuple[int, int]] = {}
    convs = {n: m for n, m in float_model.named_modules() if isinstance(m, nn.Conv2d)}

    def record(name):
        def hook(_module, _args, output):
            out_hw.setdefault(name, tuple(output.shape[-2:]))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in convs.items()]
    try:
        with torch.no_grad():
            float_model.eval()(_input(1))
    finally:
        for h in handles:
            h.remove()

    def macs(name):
        c = convs[name]
        kh, kw = c.kernel_size
        return math.prod(out_hw[name]) * c.out_channels * c.in_channels // c.groups * kh * kw

    binary_macs = sum(macs(n) for n in BLOCK_CONVS)
    assert binary_macs == 4 * 115_605_504 + 3 * (57_802_752 + 3 * 115_605_504)
    float_macs = sum(macs(n) for n in FLOAT_CONVS) + 512 * 10
    assert t["binary_macs"] == t["bops"] == binary_macs
    assert t["conv_linear_macs"] == binary_macs + float_macs
    assert t["flops"] == float_macs
    assert t["ops"] == t["bops"] / 64 + t["flops"]
    assert t["binary_mac_share"] == binary_macs / (binary_macs + float_macs)

    float_bytes = sum(v.numel() * v.element_size() for v in float_model.state_dict().values())
    assert t["float_size_bytes"] == float_bytes
    assert t["packed_size_bytes"] == packed_bytes(binary_model)
    assert t["size_ratio"] == float_bytes / t["packed_size_bytes"]
    assert t["params"] == sum(p.numel() for p in float_model.parameters())
    expected_binary_params = sum(float_model.get_submodule(n).weight.numel() for n in BLOCK_CONVS)
    assert t["binary_params"] == expected_binary_params


def test_report_prints_and_serializes(binary_model):
    report = autobin.info(binary_model).report
    text = str(report)
    for name in [*BLOCK_CONVS, *FLOAT_CONVS, "fc", "act1", "layer4.1.act2"]:
        assert name in text
    assert "resnet18" in text and "adabin" in text
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert {d["name"] for d in data["layers"] if d["decision"] == "binarize"} == set(BLOCK_CONVS)
    assert "binary_layers=16" in repr(report)


# ------------------------------------------------------------------------------- behaviour
def test_input_model_is_unchanged(float_model, binary_model):
    fresh = _resnet18()
    assert binary_model is not float_model
    for (k1, v1), (k2, v2) in zip(fresh.state_dict().items(), float_model.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert [type(m) for m in fresh.modules()] == [type(m) for m in float_model.modules()]
    assert float_model_of(binary_model) is float_model


def test_inplace_reuses_the_model_modules():
    model = _resnet18()
    conv = model.layer1[0].conv1
    result = binarize(model, inplace=True)
    assert isinstance(result.layer1[0].conv1, BinaryLayer)
    assert result.layer1[0].conv1 is not conv
    assert result.layer1[0].bn1 is model.layer1[0].bn1  # modules are reused, not copied
    teacher = float_model_of(result)
    assert type(teacher.layer1[0].conv1) is nn.Conv2d  # the teacher is a float copy


def test_binarizing_a_binarized_model_raises(binary_model):
    with pytest.raises(ValueError, match="already binarized"):
        binarize(binary_model)
    with pytest.raises(ValueError, match="already binarized"):
        explain(binary_model)


@pytest.mark.parametrize("training", [True, False])
def test_train_eval_mode_is_preserved(training):
    model = _resnet18().train(training)
    result = binarize(model)
    assert result.training is training
    assert all(m.training is training for m in result.modules())
    assert all(m.training is training for m in model.modules())


def test_state_dict_round_trip_gives_identical_outputs():
    trained = binarize(_resnet18(seed=0))
    # make the state differ from a fresh init: BN statistics, binary sets, Maxout slopes
    trained.train()
    with torch.no_grad():
        trained(_input())
        for m in trained.modules():
            if isinstance(m, BinaryLayer):
                m.act_alpha.fill_(0.7)
                m.act_beta.fill_(0.1)
            if isinstance(m, Maxout):
                m.gamma_neg.fill_(0.5)
    fresh = binarize(_resnet18(seed=123))
    assert list(fresh.state_dict()) == list(trained.state_dict())
    fresh.load_state_dict(trained.state_dict(), strict=True)
    trained.eval()
    fresh.eval()
    x = _input()
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))


def test_scope_after_binary_keeps_the_stem_relu(tmp_path, float_model):
    path = tmp_path / "after-binary.yaml"
    path.write_text(
        "schema_version: 1\nname: adabin-after-binary\nextends: adabin\n"
        "activations: {scope: after_binary}\n"
    )
    result = binarize(float_model, str(path))
    assert type(result.get_submodule("act1")) is nn.ReLU
    maxouts = _modules_of(result, Maxout)
    assert "act1" not in maxouts and len(maxouts) == 16
    entry = next(e for e in autobin.info(result).report.entries if e.name == "act1")
    assert entry.decision == "keep" and "after_binary" in entry.reason
    assert sorted(_modules_of(result, BinaryLayer)) == sorted(BLOCK_CONVS)


@pytest.mark.parametrize(("recipe", "cls"), [("bnn", SignConv2d), ("xnor", XnorConv2d)])
def test_baseline_recipes_binarize_the_same_layers(float_model, recipe, cls):
    result = binarize(float_model, recipe)
    layers = _modules_of(result, BinaryLayer)
    assert sorted(layers) == sorted(BLOCK_CONVS)
    method = load_recipe(recipe).defaults.method
    for layer in layers.values():
        assert type(layer) is cls and layer.method == method
        assert not hasattr(layer, "act_alpha") and not hasattr(layer, "act_beta")
    out = result.train()(_input())
    out.sum().backward()
    assert all(m.weight.grad is not None for m in layers.values())
