"""The 128x128 detectors shipped in configs/mmdet/: they build, binarize with the expected layers
binary and float, train a few iterations through mmengine's Runner and evaluate with mmdet's
VOCMetric on a tiny mnist-det-small."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mmdet_helpers import FAST, build_float

import autobin
from autobin.cli import main

pytestmark = pytest.mark.mmdet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mmdet"
SSD = CONFIGS / "ssd128_r18_mnist-det-small.py"
RETINANET = CONFIGS / "retinanet128_r18_mnist-det-small.py"


def _decisions(detector) -> dict[str, str]:
    import torch

    from autobin.nn import BinaryConv2d

    return {
        name: "binary" if isinstance(m, BinaryConv2d) else "float"
        for name, m in detector.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    from autobin.data.mnist_det import write_preset

    return write_preset("mnist-det-small", tmp_path_factory.mktemp("d") / "m", trainval=4, test=2)


def test_ssd_builds_with_anchors_for_128_pixels() -> None:
    import torch

    detector = build_float(str(SSD))
    head = detector.bbox_head
    assert type(detector.neck).__name__ == "SSDNeck" and type(head).__name__ == "SSDHead"
    generator = head.prior_generator
    assert [s[0] for s in generator.strides] == [8, 16, 32, 64]
    feats = detector.extract_feat(torch.zeros(1, 3, 128, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    # 6 anchors per position (two squares, 1:2, 2:1, 1:3, 3:1), the smallest square 12 px
    assert generator.num_base_priors == [6, 6, 6, 6]
    first = generator.base_anchors[0]
    sides = (first[:, 2:] - first[:, :2]).tolist()
    assert [12.0, 12.0] in sides


def test_ssd_example_input_is_its_anchor_input_size() -> None:
    """SSDAnchorGenerator with explicit min_sizes keeps no input_size; the family reads the
    config's anchor_generator.input_size (128), not the 300 fallback; the eager pass runs
    at 128 (the stem's output is 64 x 64 after its stride 2)."""
    from autobin.integrations.mmdet.family import MMDetFamily, default_input_size

    detector = build_float(str(SSD))
    assert not hasattr(detector.bbox_head.prior_generator, "input_size")
    assert default_input_size(detector) == (128, 128)
    images, samples = MMDetFamily().example_inputs(detector)
    assert tuple(images.shape) == (1, 3, 128, 128)
    assert samples[0].metainfo["img_shape"] == (128, 128)
    report = autobin.explain(detector, "ssd-adabin")
    assert report.input_shape == (3, 128, 128)


def test_ssd_binarizes_all_but_the_stem_downsample_and_prediction_convs() -> None:
    from autobin.integrations.mmdet import binarize_detector

    detector = build_float(str(SSD))
    binary = binarize_detector(detector, "ssd-adabin")
    decisions = _decisions(binary)
    floats = sorted(n for n, d in decisions.items() if d == "float")
    branches = [f"bbox_head.{kind}.{i}" for kind in ("cls_convs", "reg_convs") for i in range(4)]
    predictions = [f"{b}.1" for b in branches]  # 1x1, after a 3x3 depthwise conv (SSDLite)
    depthwise = [f"{b}.0.conv" for b in branches]
    downsample = [f"backbone.layer{i}.0.downsample.0" for i in (2, 3, 4)]
    assert floats == sorted(["backbone.stem.0", *downsample, *predictions, *depthwise])
    assert sum(d == "binary" for d in decisions.values()) == len(decisions) - 20
    assert autobin.info(binary).report.totals["binary_mac_share"] >= 0.90


def test_retinanet_binarizes_with_det_adabin() -> None:
    from autobin.integrations.mmdet import binarize_detector

    detector = build_float(str(RETINANET))
    binary = binarize_detector(detector, "det-adabin")
    decisions = _decisions(binary)
    assert decisions["backbone.stem.0"] == "float"
    assert decisions["backbone.stem.3"] == "binary"
    assert decisions["bbox_head.retina_cls"] == "float"
    assert decisions["bbox_head.retina_reg"] == "float"
    assert decisions["backbone.layer2.0.downsample.0"] == "float"
    assert decisions["bbox_head.cls_convs.0.conv"] == "binary"
    assert decisions["bbox_head.reg_convs.1.conv"] == "binary"
    assert decisions["backbone.layer1.0.conv1"] == "binary"
    assert decisions["neck.fpn_convs.0.conv"] == "binary"


@pytest.mark.slow
@pytest.mark.parametrize(("config", "recipe"), [(SSD, "ssd-adabin"), (RETINANET, "det-adabin")])
def test_train_a_few_iterations_and_evaluate(config, recipe, small_root, tmp_path, capsys) -> None:
    float_cfg, binary_cfg = tmp_path / "float.py", tmp_path / "binary.py"
    data = ["--data", "mnist-det-small", "--data-root", str(small_root)]
    assert main(["mmdet-config", str(config), "--float", *data, "-o", str(float_cfg)]) == 0
    iters = [
        "train_cfg.max_iters=2",
        "train_cfg.val_interval=2",
        "default_hooks.checkpoint.interval=2",
        *FAST,
    ]
    argv = ["mmdet-train", str(float_cfg), "--work-dir", str(tmp_path / "f"), "--cfg-options"]
    assert main([*argv, *iters]) == 0
    teacher = tmp_path / "f" / "iter_2.pth"
    assert teacher.is_file()
    argv = [
        "mmdet-config",
        str(config),
        "--recipe",
        recipe,
        "--teacher",
        str(teacher),
        *data,
        "-o",
        str(binary_cfg),
    ]
    assert main(argv) == 0
    argv = ["mmdet-train", str(binary_cfg), "--work-dir", str(tmp_path / "b"), "--cfg-options"]
    assert main([*argv, *iters]) == 0
    capsys.readouterr()
    argv = [
        "mmdet-test",
        str(binary_cfg),
        str(tmp_path / "b" / "iter_2.pth"),
        "--work-dir",
        str(tmp_path / "t"),
        "--cfg-options",
        "test_dataloader.num_workers=0",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out  # mmengine's log, then the metrics as JSON
    metrics = json.loads(out[out.rindex("\n{\n") + 1 :])
    assert 0.0 <= metrics["pascal_voc/mAP"] <= 1.0 and math.isfinite(metrics["pascal_voc/mAP"])
