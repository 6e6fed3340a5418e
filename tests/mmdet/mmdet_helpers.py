"""Helpers shared by the MMDetection tests (real mmdet, configs shipped inside mmdet)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

SSD_VOC = "mmdet::pascal_voc/ssd300_voc0712.py"
RETINANET_R18 = "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py"
#: --cfg-options for a quick, logged, seeded mmengine run on a tiny set (batch 1, no workers)
FAST = [
    "train_dataloader.batch_size=1",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "default_hooks.logger.interval=1",
    "randomness.seed=0",
]


def build_float(config: str, **model_changes):
    """A float detector built from a shipped config (pretrained downloads stripped)."""
    from autobin.integrations.mmdet import build_float_detector, load_config
    from autobin.integrations.mmdet.config import detector_config

    det_cfg = detector_config(load_config(config))
    for key, value in model_changes.items():
        det_cfg[key].update(value)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pretrained-download warning (tested on its own)
        return build_float_detector(det_cfg, config)


def write_binarized_ssd_config(out: Path, data_root: Path) -> Path:
    """``autobin mmdet-config`` of SSD300 with ``ssd300-adabin`` on a mnist-det root."""
    from autobin.cli import main

    argv = ["mmdet-config", SSD_VOC, "--recipe", "ssd300-adabin", "--data", "mnist-det",
            "--data-root", str(data_root), "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out
