"""Evaluate a detector module (float, binarized or loaded from the zoo) on a VOC-format split.

``autobin mmdet-test`` evaluates a config and a checkpoint through mmengine's Runner; a zoo
entry has no training config, only the detector. :func:`evaluate_detector` runs the same parts
without a Runner: mmdet's ``VOCDataset`` with a test pipeline, the detector's ``test_step`` and
mmdet's ``VOCMetric`` (mAP at IoU 0.5, area mode) through mmengine's ``Evaluator``, so a model
gives the number ``mmdet-test`` prints for its checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ...data.mnist_det import CLASSES, SUB_ROOT, check_voc_root, read_manifest

MAP_KEY = "pascal_voc/mAP"


def test_pipeline(input_size: Sequence[int]) -> list[dict]:
    """mmdet's test pipeline for square-resized inputs of ``input_size = (H, W)``."""
    h, w = int(input_size[0]), int(input_size[1])
    return [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": (w, h), "keep_ratio": False},
        {"type": "LoadAnnotations", "with_bbox": True},
        {
            "type": "PackDetInputs",
            "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
        },
    ]


def image_size(data_root: str | os.PathLike[str], input_size: Sequence[int] | None) -> tuple:
    """``input_size`` if given, else the ``(H, W)`` of a generated dataset's images."""
    if input_size is not None:
        return tuple(int(v) for v in input_size)
    manifest = read_manifest(data_root)
    if manifest is None:
        raise ValueError(
            f"{data_root} is not a generated mnist-det dataset, so its image size is unknown; "
            "pass input_size=(H, W)"
        )
    side = int(manifest["spec"]["image_size"])
    return (side, side)


def voc_dataset(data_root: str | os.PathLike[str], split: str, pipeline: list[dict]):
    """mmdet's ``VOCDataset`` over ``split`` of a VOC-format root (mnist-det's classes)."""
    from mmdet.datasets import VOCDataset
    from mmengine.registry import DefaultScope

    root = str(Path(data_root).resolve())
    check_voc_root(root)
    with DefaultScope.overwrite_default_scope("mmdet"):  # the pipeline's transforms are mmdet's
        return VOCDataset(
            data_root=root,
            ann_file=f"{SUB_ROOT}ImageSets/Main/{split}.txt",
            data_prefix={"sub_data_root": SUB_ROOT},
            metainfo={"classes": CLASSES},
            pipeline=pipeline,
            test_mode=True,
        )


def evaluate_detector(
    detector: nn.Module,
    data_root: str | os.PathLike[str],
    *,
    split: str = "test",
    input_size: Sequence[int] | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """mmdet's VOC metrics of ``detector`` on ``split`` of ``data_root``.

    Args:
        detector: an mmdet detector (float or binarized; eval mode is set and restored).
        data_root: a VOC-format root such as ``autobin mmdet-data mnist-det-small`` writes.
        split: ``test`` or ``trainval``.
        input_size: ``(H, W)`` the images are resized to (default: their own size, e.g.
            128x128 for mnist-det-small).
        batch_size: images per forward pass.

    Returns:
        mmengine's metrics dict (``pascal_voc/mAP`` and ``pascal_voc/AP50``).
    """
    from mmengine.dataset import pseudo_collate
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = voc_dataset(data_root, split, test_pipeline(image_size(data_root, input_size)))
        evaluator = Evaluator([{"type": "VOCMetric", "metric": "mAP", "eval_mode": "area"}])
        evaluator.dataset_meta = dataset.metainfo
        was_training = detector.training
        detector.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(dataset), batch_size):
                    batch = pseudo_collate(
                        [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                    )
                    outputs = detector.test_step(batch)
                    evaluator.process(data_samples=outputs, data_batch=batch)
        finally:
            detector.train(was_training)
        return {k: float(v) for k, v in evaluator.evaluate(len(dataset)).items()}


__all__ = ["MAP_KEY", "evaluate_detector", "image_size", "test_pipeline", "voc_dataset"]
