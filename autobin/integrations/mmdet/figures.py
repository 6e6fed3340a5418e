"""Pictures of detections: several detectors' boxes on the same test images, side by side.

:func:`predict_images` runs detectors on images of a VOC-format split (mmdet's test pipeline,
boxes in the image's own pixels); :func:`draw_side_by_side` writes one PNG with a column per
detector and a row per image, each box drawn with its class and score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...atomic import atomic_write
from ...data.mnist_det import CLASSES

PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
"""One colour per class ``'0'``..``'9'``."""
HEADER = 18
GAP = 6


@dataclass(frozen=True)
class Detection:
    """One predicted box: class index, score and ``(x0, y0, x1, y1)`` in image pixels."""

    label: int
    score: float
    box: tuple[float, float, float, float]


def predict_images(
    detector: nn.Module,
    data_root: str | os.PathLike[str],
    indices: Sequence[int],
    *,
    split: str = "test",
    input_size: Sequence[int] | None = None,
    score_thr: float = 0.3,
) -> tuple[list[Path], list[list[Detection]]]:
    """The image paths of ``split``'s items ``indices`` and ``detector``'s boxes on each."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    from .evaluate import image_size, test_pipeline, voc_dataset

    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = voc_dataset(data_root, split, test_pipeline(image_size(data_root, input_size)))
        batch = pseudo_collate([dataset[i] for i in indices])
        was_training = detector.training
        detector.eval()
        try:
            with torch.no_grad():
                outputs = detector.test_step(batch)
        finally:
            detector.train(was_training)
    paths, detections = [], []
    for sample in outputs:
        paths.append(Path(sample.img_path))
        pred = sample.pred_instances
        keep = pred.scores >= score_thr
        detections.append(
            [
                Detection(int(label), float(score), tuple(float(v) for v in box))
                for label, score, box in zip(
                    pred.labels[keep].tolist(),
                    pred.scores[keep].tolist(),
                    pred.bboxes[keep].tolist(),
                )
            ]
        )
    return paths, detections


def _cell(image, detections: Sequence[Detection], scale: int):
    from PIL import Image, ImageDraw

    big = image.convert("RGB").resize(
        (image.width * scale, image.height * scale), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(big)
    for det in detections:
        colour = PALETTE[det.label % len(PALETTE)]
        x0, y0, x1, y1 = (v * scale for v in det.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        text = f"{CLASSES[det.label] if det.label < len(CLASSES) else det.label} {det.score:.2f}"
        tx, ty = x0, max(0.0, y0 - 11)
        left, top, right, bottom = draw.textbbox((tx, ty), text)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0))
    return big


def draw_side_by_side(
    images: Sequence[str | os.PathLike[str]],
    columns: Mapping[str, Sequence[Sequence[Detection]]],
    out: str | os.PathLike[str],
    *,
    scale: int = 3,
) -> Path:
    """Write a PNG: one row per image, one column per detector (titled with its key).

    Each cell is the image enlarged ``scale`` times (nearest neighbour) with the detector's
    boxes drawn in the class's colour and labelled ``class score``. Written atomically.
    """
    from PIL import Image, ImageDraw

    names = list(columns)
    for name in names:
        if len(columns[name]) != len(images):
            raise ValueError(
                f"column {name!r} has detections for {len(columns[name])} images, expected "
                f"{len(images)} (one list per image)"
            )
    sources = [Image.open(p) for p in images]
    cell_w = max(s.width for s in sources) * scale
    cell_h = max(s.height for s in sources) * scale
    width = len(names) * cell_w + (len(names) + 1) * GAP
    height = HEADER + len(sources) * (cell_h + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(names):
        x = GAP + c * (cell_w + GAP)
        draw.text((x, 3), name, fill=(0, 0, 0))
        for r, source in enumerate(sources):
            sheet.paste(_cell(source, columns[name][r], scale), (x, HEADER + r * (cell_h + GAP)))
    data = np.asarray(sheet)

    def write(fh) -> None:
        Image.fromarray(data).save(fh, format="PNG")

    return atomic_write(Path(out), write)


__all__ = ["Detection", "draw_side_by_side", "predict_images"]
