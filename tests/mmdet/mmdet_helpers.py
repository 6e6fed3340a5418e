"""Helpers shared by the MMDetection tests (real mmdet, configs shipped inside mmdet)."""

from __future__ import annotations

import warnings

import torch

SSD_VOC = "mmdet::pascal_voc/ssd300_voc0712.py"
RETINANET_R18 = "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py"


def build_float(config: str, **model_changes):
    """A float detector built from a shipped config (pretrained downloads stripped)."""
    from autobin.integrations.mmdet import build_float_detector, load_config
    from autobin.integrations.mmdet.config import detector_config

    det_cfg = detector_config(load_config(config), config)
    for key, value in model_changes.items():
        det_cfg[key].update(value)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pretrained-download warning (tested on its own)
        return build_float_detector(det_cfg, config)
