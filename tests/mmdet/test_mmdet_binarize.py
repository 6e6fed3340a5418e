"""Binarizing real mmdet detectors: SSD300 (ssd300-adabin) and RetinaNet-R18 (det-adabin)."""

from __future__ import annotations

import pytest
import torch
from mmdet_helpers import RETINANET_R18, build_float
from torch import nn

import autobin
from autobin.integrations.mmdet import (
    RecipeMatchError,
    binarize_detector,
    explain_detector,
    prediction_convs,
)
from autobin.nn import AdaBinConv2d, BinaryLayer, Maxout

pytestmark = pytest.mark.mmdet


def _convs(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _decisions(report) -> dict[str, str]:
    return {e.name: e.decision for e in report.entries if e.kind == "conv"}


def test_ssd300_binarizes_backbone_and_neck_keeps_stem_and_predictions(ssd_float) -> None:
    from mmdet.models.backbones import SSDVGG
    from mmdet.models.dense_heads import SSDHead

    binary = binarize_detector(ssd_float, "ssd300-adabin")
    convs = _convs(binary)
    predictions = {f"bbox_head.{kind}_convs.{i}.0" for kind in ("cls", "reg") for i in range(6)}
    expected_float = {"backbone.features.0"} | predictions
    # VGG16: 13 convs + fc6 + fc7 in features; the SSD neck: 4 levels of (1x1, 3x3) convs
    backbone = {n for n in convs if n.startswith("backbone.")}
    neck = {n for n in convs if n.startswith("neck.")}
    assert len(backbone) == 15 and len(neck) == 8
    expected_binary = (backbone | neck) - expected_float
    binary_names = {n for n, m in convs.items() if isinstance(m, AdaBinConv2d)}
    assert binary_names == expected_binary
    for name in expected_float:
        assert not isinstance(convs[name], BinaryLayer) and type(convs[name]) is nn.Conv2d
    # the report agrees with the model, layer by layer
    decisions = _decisions(autobin.info(binary).report)
    assert {n for n, d in decisions.items() if d == "binarize"} == expected_binary
    assert {n for n, d in decisions.items() if d == "float"} == expected_float
    rules = {e.name: e.rule for e in autobin.info(binary).report.entries}
    assert rules["backbone.features.0"] == "stem"
    assert {rules[n] for n in predictions} == {"head-predictions"}
    t = autobin.info(binary).report.totals
    assert t["binarized_layers"] == 22 and t["float_layers"] == 13
    assert 0.9 < t["binary_mac_share"] < 1.0
    # every ReLU became a Maxout (VGG: 15, neck: 8); mmdet's classes are kept
    assert sum(isinstance(m, Maxout) for m in binary.modules()) == 23
    assert not any(isinstance(m, nn.ReLU) for m in binary.modules())
    assert type(binary.backbone) is SSDVGG and type(binary.bbox_head) is SSDHead
    assert type(ssd_float.backbone.features[2]) is nn.Conv2d  # the float model is untouched


def test_ssd300_binary_detector_runs_mmdet_forward_and_backward(ssd_float) -> None:
    binary = binarize_detector(ssd_float, "ssd300-adabin")
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        f_cls, f_reg = ssd_float.eval()(x)
        b_cls, b_reg = binary.eval()(x)
    assert [t.shape for t in b_cls] == [t.shape for t in f_cls]
    assert [t.shape for t in b_reg] == [t.shape for t in f_reg]
    assert all(torch.isfinite(t).all() for t in (*b_cls, *b_reg))
    binary.train()
    cls, reg = binary(x)
    (sum(c.sum() for c in cls) + sum(r.sum() for r in reg)).backward()
    conv = binary.backbone.features[2]
    assert isinstance(conv, AdaBinConv2d) and conv.weight.grad is not None


def test_binarize_is_the_same_pass_for_detectors(ssd_float) -> None:
    """autobin.binarize takes a detector directly: the mmdet family adapter, no faked timm
    metadata, no report edited after the fact."""
    from mmdet.models.backbones import SSDVGG

    from autobin.integrations.mmdet import MMDetFamily

    assert isinstance(autobin.graph.family_of(ssd_float), MMDetFamily)
    binary = autobin.binarize(ssd_float, "ssd300-adabin")
    record = autobin.info(binary)
    via_detector = autobin.info(binarize_detector(ssd_float, "ssd300-adabin"))
    assert record.report.to_dict() == via_detector.report.to_dict()
    assert record.family == "mmdet" and record.architecture["library"] == "mmdet"
    assert "model = dict(" in record.architecture["config"]
    assert record.float_model is ssd_float
    assert "pretrained_cfg" not in vars(binary) and "pretrained_cfg" not in vars(ssd_float)
    regions = [r["name"] for r in record.report.regions]
    assert "<root>" not in regions and "data_preprocessor" not in regions
    assert regions[0] == "backbone" and type(binary.backbone) is SSDVGG
    # the module tree (what print(model) shows) is what the report says, name by name
    entries = record.report.entries
    binary_layers = {n for n, m in binary.named_modules() if isinstance(m, BinaryLayer)}
    assert binary_layers == {e.name for e in entries if e.decision == "binarize"}
    maxouts = {n for n, m in binary.named_modules() if isinstance(m, Maxout)}
    assert maxouts == {e.name for e in entries if e.decision == "maxout"}


def test_explain_matches_binarize_and_prediction_convs(ssd_float) -> None:
    report = explain_detector(ssd_float, "ssd300-adabin")
    binary = binarize_detector(ssd_float, "ssd300-adabin")
    assert report.to_dict()["layers"] == autobin.info(binary).report.to_dict()["layers"]
    names = prediction_convs(ssd_float, torch.randn(1, 3, 300, 300))
    assert sorted(names) == sorted(
        f"bbox_head.{kind}_convs.{i}.0" for kind in ("cls", "reg") for i in range(6)
    )
    text = str(report)
    assert "backbone.features.2" in text and "binarize (adabin)" in text


def test_retinanet_r18_det_adabin_is_generic() -> None:
    from mmdet.models.backbones import ResNet

    recipe = autobin.load_recipe("det-adabin")
    assert all(rule.match.names is None for rule in recipe.rules)  # names no detector module
    detector = build_float(RETINANET_R18)
    binary = binarize_detector(detector, "det-adabin", input_size=(256, 256))
    convs = _convs(binary)
    expected_float = {
        "backbone.conv1",
        "bbox_head.retina_cls",
        "bbox_head.retina_reg",
        *(n for n in convs if ".downsample." in n),
    }
    assert len([n for n in expected_float if "downsample" in n]) == 3
    binary_names = {n for n, m in convs.items() if isinstance(m, AdaBinConv2d)}
    assert binary_names == set(convs) - expected_float
    # ResNet-18 block convs, FPN laterals + outputs (+ 2 extra levels), 4+4 head convs
    assert len([n for n in binary_names if n.startswith("backbone.")]) == 16
    assert len([n for n in binary_names if n.startswith("neck.")]) == 8
    assert len([n for n in binary_names if n.startswith("bbox_head.")]) == 8
    decisions = _decisions(autobin.info(binary).report)
    assert {n for n, d in decisions.items() if d == "binarize"} == binary_names
    assert type(binary.backbone) is ResNet
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        cls, _ = binary.eval()(x)
    assert len(cls) == 5 and all(torch.isfinite(c).all() for c in cls)


def test_recipe_that_matches_nothing(ssd_float, tmp_path) -> None:
    path = tmp_path / "nothing.yaml"
    path.write_text(
        "schema_version: 1\nname: nothing\nrules:\n"
        "  - {match: {name: 'no_such_part.**'}, action: binarize}\n"
    )
    with pytest.raises(RecipeMatchError, match=r"nothing.*binarizes no layer.*autobin explain"):
        binarize_detector(ssd_float, str(path))


def test_not_a_detector() -> None:
    from autobin.integrations.mmdet import DetectorConfigError

    with pytest.raises(DetectorConfigError, match="not an mmdet detector"):
        binarize_detector(nn.Sequential(nn.Conv2d(3, 8, 3)), "det-adabin")
