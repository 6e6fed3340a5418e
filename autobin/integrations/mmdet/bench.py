"""``autobin bench CONFIG.py``: a binarized detector's backbone + neck, float vs deployed.

The float detector is built from the config (random weights, pretrained downloads removed),
binarized with the recipe and deployed (:func:`autobin.deploy`, in place: it stays an mmdet
detector). The part timed is the backbone and neck (``extract_feat``), where the binary layers
are; the head's prediction convs are float in both models. Timings come from
:func:`autobin.deploy.bench.bench_models`: float32 (NCHW or channels-last), the float part's
best CPU configuration (bf16 channels-last where faster), fake-quantized and deployed, side by
side in one process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ...deploy import DeployedModel, deploy
from ...deploy.bench import ModelBench, bench_models
from ...model_info import info
from .binarize import binarize_detector, example_inputs
from .build import build_float_detector
from .config import detector_config, load_config


class DetectorFeatures(nn.Module):
    """A detector's backbone and neck as one module: ``forward(x)`` is mmdet's
    ``extract_feat`` (the multi-level feature maps the head reads). Module paths are the
    detector's own (``backbone.layer1.0.conv1``)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone
        if getattr(detector, "with_neck", False):
            self.neck = detector.neck

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone(x)
        return self.neck(feats) if hasattr(self, "neck") else feats


def bench_detector(
    config: str | os.PathLike[str],
    *,
    recipe: str = "det-adabin",
    batch: int = 1,
    input_size: Sequence[int] | None = None,
    reps: int = 10,
    clock: str = "wall",
    float_parts: str = "auto",
) -> ModelBench:
    """Time the backbone + neck of the detector in ``config``: float, fake-quantized, deployed.

    Args:
        config: an mmdet config file (float or ``autobin.BinarizedDetector``).
        recipe: the recipe that binarizes it (``ssd-adabin``, ``det-adabin``, ...).
        batch: images per forward.
        input_size: ``(H, W)`` (default: SSD's anchor input size, else 300).
        reps, clock, float_parts: as for :func:`autobin.deploy.bench.bench_models`.
    """
    source = str(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pretrained-download removal (said by mmdet-config)
        cfg = load_config(source)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        float_det = build_float_detector(detector_config(cfg), source).eval()
    bnn = binarize_detector(float_det, recipe, input_size=input_size).eval()
    fast = deploy(bnn, float_parts=float_parts)
    summary = info(fast).deployment
    layered = deploy(bnn, float_parts=float_parts, compile_graph=False)
    x = example_inputs(float_det, input_size)[0].repeat(batch, 1, 1, 1)
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    channels = int(x.shape[1])
    return bench_models(
        DetectorFeatures(float_det), DetectorFeatures(bnn), x,
        arch=f"{os.path.basename(source)} backbone+neck", recipe=str(recipe), reps=reps,
        fast=DeployedModel(DetectorFeatures(fast), summary, channels),
        layered=DeployedModel(DetectorFeatures(layered), info(layered).deployment, channels),
        clock=clock,
    )  # fmt: skip


__all__ = ["DetectorFeatures", "bench_detector"]
