"""det-adabin on mmdet's own configs, one of each kind that had a blind spot: FCOS (box convs
behind a per-level Scale and an exp/relu), Faster R-CNN (an RPN whose outputs the detector does
not return in mode='tensor', and a RoI head of linears), YOLOX (three convs per level) and DETR
(a transformer head over a ResNet).

Each goes the sweep's way (benchmarks/mmdet_sweep.py: build -> binarize -> the stem and every
prediction layer of the binarized detector float -> one training step on real mnist-det-small
images -> predict), and its prediction layers are exactly the ones named here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from mmdet_sweep import run_config, write_images

pytestmark = pytest.mark.mmdet

FCOS = "fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py"
CASES = {
    FCOS: ("anchor-free", {f"bbox_head.conv_{k}" for k in ("cls", "reg", "centerness")}),
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": (
        "two-stage",
        {"rpn_head.rpn_cls", "rpn_head.rpn_reg", "roi_head.bbox_head.fc_cls",
         "roi_head.bbox_head.fc_reg"},
    ),
    "yolox/yolox_tiny_8xb8-300e_coco.py": (
        "yolo",
        {f"bbox_head.multi_level_conv_{k}.{i}" for k in ("cls", "reg", "obj") for i in range(3)},
    ),
    "detr/detr_r18_8xb2-500e_coco.py": ("detr", {"bbox_head.fc_cls", "bbox_head.fc_reg"}),
}  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("sweep") / "mnist-det-small")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("config", list(CASES))
def test_det_adabin_on_a_shipped_config(config: str, images: Path) -> None:
    kind, predictions = CASES[config]
    result = run_config(config, kind, str(images), budget=600)
    assert result.status == "ok", f"{result.stage}: {result.reason}"
    assert set(result.prediction_layers) == predictions
    assert result.input_size == 128
    # RoI heads' and transformers' linears stay float and carry most MACs at 128 px
    assert result.binarized_layers >= 10 and 0.05 < result.binary_mac_share < 1.0


def test_fcos_box_conv_behind_a_scale_stays_float() -> None:
    """FCOS returns ``relu(scale(conv_reg(x)))`` per level: conv_reg is a prediction conv."""
    import torch
    from mmdet_helpers import build_float

    from autobin.integrations.mmdet import explain_detector, prediction_convs

    detector = build_float(f"mmdet::{FCOS}")
    assert type(detector.bbox_head.scales[0]).__name__ == "Scale"
    names = prediction_convs(detector, torch.randn(1, 3, 128, 128))
    assert sorted(names) == sorted(CASES[FCOS][1])
    report = explain_detector(detector, "det-adabin", input_size=(128, 128))
    decisions = {e.name: (e.decision, e.rule) for e in report.layers(kind="conv")}
    for name in names:
        assert decisions[name][0] == "float", (name, decisions[name])
    assert decisions["bbox_head.reg_convs.3.conv"][0] == "binarize"
