"""A binarized SSD300 trained with distillation through mmengine's Runner on a tiny mnist-det,
resumed, and evaluated by mmdet's own VOCMetric; the mmdet-config output loads and builds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mmdet_helpers import FAST, write_binarized_ssd_config

from autobin.cli import main

pytestmark = [pytest.mark.mmdet, pytest.mark.slow]


def _scalars(work_dir: Path) -> list[dict]:
    """Every record of mmengine's scalar logs (one vis_data/scalars.json per run)."""
    records = []
    for path in sorted(work_dir.glob("*/vis_data/scalars.json")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line]
    return records


@pytest.fixture(scope="module")
def ssd_config(tmp_path_factory, mnist_det_root) -> Path:
    out = tmp_path_factory.mktemp("cfg") / "ssd300_bin.py"
    return write_binarized_ssd_config(out, mnist_det_root)


def test_config_loads_and_builds(ssd_config, mnist_det_root) -> None:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from autobin.integrations.mmdet import BinarizedDetector
    from autobin.nn import AdaBinConv2d

    cfg = Config.fromfile(str(ssd_config))
    assert cfg.model.type == "autobin.BinarizedDetector" and cfg.model.recipe == "ssd300-adabin"
    assert "autobin.integrations.mmdet" in cfg.custom_imports.imports
    assert cfg.model.detector.bbox_head.num_classes == 10
    assert cfg.model.detector.backbone.init_cfg is None  # the download was stripped
    assert cfg.train_dataloader.dataset.data_root == str(mnist_det_root.resolve())
    assert cfg.test_evaluator.type == "VOCMetric"
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert isinstance(model, BinarizedDetector)
    assert isinstance(model.detector.backbone.features[2], AdaBinConv2d)
    assert model.teacher is not None and not model.teacher.training
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert all(not p.requires_grad for p in model.teacher.parameters())


def test_train_distill_resume_and_test(ssd_config, tmp_path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["mmdet-train", str(ssd_config), "--work-dir", str(work), "--cfg-options",
            "train_cfg.max_epochs=1", *FAST]  # fmt: skip
    assert main(argv) == 0
    assert (work / "epoch_1.pth").is_file()
    first = [r for r in _scalars(work) if "loss" in r]
    assert len(first) == 2  # 2 trainval images, batch 1: two iterations, each logged
    for record in first:
        for key in ("loss", "loss_cls", "loss_bbox", "loss_distill_feat", "loss_distill_cls"):
            assert math.isfinite(record[key]), (key, record)
        assert record["loss_distill_feat"] > 0 and record["loss_distill_cls"] > 0
    val = [r for r in _scalars(work) if "pascal_voc/mAP" in r]
    assert len(val) == 1 and 0.0 <= val[0]["pascal_voc/mAP"] <= 1.0  # checked exactly below

    # resume from the checkpoint: the run continues at iteration 3 and writes epoch 2
    argv = ["mmdet-train", str(ssd_config), "--work-dir", str(work), "--resume",
            "--cfg-options", "train_cfg.max_epochs=2", *FAST]  # fmt: skip
    assert main(argv) == 0
    assert (work / "epoch_2.pth").is_file()
    iters = [r["iter"] for r in _scalars(work) if "loss" in r]
    assert iters == [1, 2, 3, 4]

    capsys.readouterr()
    argv = ["mmdet-test", str(ssd_config), str(work / "epoch_2.pth"), "--work-dir",
            str(tmp_path / "test"), "--cfg-options", "test_dataloader.num_workers=0"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out  # mmengine's log, then the metrics as JSON
    metrics = json.loads(out[out.rindex("\n{\n") + 1 :])
    # the test split is the validation split: mmdet-test of epoch 2's checkpoint must give
    # exactly the mAP that validation logged after epoch 2 (the same weights, the same images);
    # evaluating initial weights or a half-loaded checkpoint would not
    val = [r for r in _scalars(work) if "pascal_voc/mAP" in r]
    assert len(val) == 2  # after epoch 1, and after epoch 2 of the resumed run
    assert metrics["pascal_voc/mAP"] == val[-1]["pascal_voc/mAP"]
