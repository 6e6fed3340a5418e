"""``autobin.search`` on mmdet detectors: which layers of a detector stay float, measured.

The search (:mod:`autobin.search`) is the same for every model; what a detector changes is the
:class:`DetectorObjective`, registered for the mmdet family when this package is imported:

* calibration inputs: images of a VOC-format root's ``trainval`` split (mmdet's ``VOCDataset``
  with a test pipeline: load, resize to the root's image size, pack), of an mmdet dataset or of
  an mmdet DataLoader, each batch preprocessed by the detector's own ``data_preprocessor``
  (normalization, BGR -> RGB, padding), or a tensor of preprocessed images;
* what is compared: the neck's feature levels (the backbone's without a neck) and the head's
  class scores and box regressions, as the float detector and each binarized configuration
  compute them;
* the loss: what a binary student of the detector distills, summed: the normalized feature MSE
  averaged over levels (:func:`.distill.feature_loss`); the KL of the class scores (softmax per
  anchor for SSD, Bernoulli per class for sigmoid heads), each anchor weighted by the teacher's
  foreground probability (:func:`.distill.foreground_cls_loss`: the student's plain mean over
  anchors is dominated by confident background and did not see a binarized class-prediction
  conv of a trained SSD, whose student then trained worse); and the same normalized MSE on the
  box regressions. The student learns its boxes from the ground truth, not from the teacher, so
  its distillation has no box term; the search has no ground truth, and without a box term it
  could not see the regression convs at all (binarizing them would look free).

:func:`search_detector` is ``autobin search CONFIG``: the float detector of an mmdet config,
loaded from a trained checkpoint, searched on a VOC root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.mnist_det import read_manifest
from ...search import SearchError, make_budget, search
from ...search.calibration import batches, calibration_images, images_from_batches
from ...search.objective import Objective
from .build import build_float_detector
from .config import detector_config, float_config
from .distill import feature_loss, foreground_cls_loss
from .evaluate import test_pipeline, voc_dataset
from .family import default_input_size
from .model import load_float_weights

CALIBRATION_SPLIT = "trainval"
DEFAULT_SEARCH_RECIPE = "det-adabin"


@dataclass(frozen=True)
class DetectorOutputs:
    """What the search compares between detectors.

    Attributes:
        features: the neck's output levels (the backbone's without a neck).
        scores: the head's class scores per level (empty without a ``bbox_head``).
        boxes: the head's box regressions per level (empty without a ``bbox_head``).
        channels: class-score channels per anchor (``cls_out_channels``).
        sigmoid: whether the head scores classes with sigmoids.
    """

    features: list[torch.Tensor]
    scores: list[torch.Tensor]
    boxes: list[torch.Tensor]
    channels: int
    sigmoid: bool


def _levels(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in value if isinstance(v, torch.Tensor)]


def _cat_levels(parts: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.cat(level) for level in zip(*parts, strict=True)] if parts else []


class DetectorObjective(Objective):
    """Distillation between a float mmdet detector and its binarized configurations."""

    loss_name = "distill"

    def images(self, model: nn.Module, data: Any, size: int, seed: int) -> torch.Tensor:
        """Preprocessed inputs ``(N, 3, H, W)`` from a VOC root, an mmdet dataset or
        DataLoader, or a tensor (already preprocessed), chosen by ``seed``."""
        if isinstance(data, (str, os.PathLike)):
            data = calibration_dataset(data, root_image_size(data) or default_input_size(model))
        if isinstance(data, DataLoader):
            images = _from_loader(model, data, size)
        elif isinstance(data, torch.Tensor):
            images = data
        else:
            images = _from_dataset(model, data, size, seed)
        return calibration_images(images, size, seed)

    @torch.no_grad()
    def outputs(self, model: nn.Module, images: torch.Tensor, batch_size: int) -> DetectorOutputs:
        model.eval()
        head = getattr(model, "bbox_head", None)
        features, scores, boxes = [], [], []
        for chunk in batches(images, batch_size):
            levels = _levels(model.extract_feat(chunk))
            features.append([f.float() for f in levels])
            if head is not None:
                predictions = head(tuple(levels))
                scores.append([s.float() for s in predictions[0]])
                boxes.append([b.float() for b in predictions[1]])
        return DetectorOutputs(
            _cat_levels(features),
            _cat_levels(scores),
            _cat_levels(boxes),
            int(getattr(head, "cls_out_channels", 1)),
            bool(getattr(head, "use_sigmoid_cls", False)),
        )

    def loss(self, outputs: DetectorOutputs, reference: DetectorOutputs) -> float:
        total = feature_loss(outputs.features, reference.features)
        if reference.scores:
            total = total + foreground_cls_loss(
                outputs.scores,
                reference.scores,
                channels=reference.channels,
                sigmoid=reference.sigmoid,
            )
        if reference.boxes:
            total = total + feature_loss(outputs.boxes, reference.boxes)
        return float(total)


def root_image_size(data_root: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(H, W)`` of a generated mnist-det root's images, None for another VOC root."""
    manifest = read_manifest(data_root)
    if manifest is None:
        return None
    side = int(manifest["spec"]["image_size"])
    return (side, side)


def calibration_dataset(data_root: str | os.PathLike[str], input_size: Sequence[int]):
    """mmdet's ``VOCDataset`` over the ``trainval`` split of a VOC-format root with a test
    pipeline that resizes to ``input_size = (H, W)``."""
    return voc_dataset(data_root, CALIBRATION_SPLIT, test_pipeline(input_size))


def _preprocess(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    preprocessor = getattr(model, "data_preprocessor", None)
    if preprocessor is None:
        return torch.stack(list(batch["inputs"])).float()
    return preprocessor(dict(batch), False)["inputs"]


def _item_batch(items: list[Any]) -> dict[str, Any]:
    from mmengine.dataset import pseudo_collate

    return pseudo_collate(items)


def _from_dataset(model: nn.Module, dataset: Any, size: int, seed: int) -> torch.Tensor:
    try:
        count = len(dataset)
    except TypeError:
        raise SearchError(
            f"calibration data of type {type(dataset).__name__} is not usable for a detector; "
            "pass a VOC-format root (e.g. data/mnist-det-small), an mmdet dataset or "
            "DataLoader, or a tensor of preprocessed images"
        ) from None
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size].tolist()
    items = [dataset[i] for i in order]
    if not items:
        return torch.empty(0)
    if not all(isinstance(item, Mapping) and "inputs" in item for item in items):
        raise SearchError(
            "calibration items for a detector must be mmdet data dicts with 'inputs' (what an "
            "mmdet dataset with PackDetInputs returns); pass a VOC-format root or such a dataset"
        )
    with torch.no_grad():
        return torch.cat([_preprocess(model, _item_batch(items[i : i + 16]))
                          for i in range(0, len(items), 16)])  # fmt: skip


def _from_loader(model: nn.Module, loader: DataLoader, size: int) -> torch.Tensor:
    def images_of(batch: Any) -> torch.Tensor:
        if not isinstance(batch, Mapping) or "inputs" not in batch:
            raise SearchError(
                "an mmdet DataLoader for the search must yield dicts with 'inputs' (mmdet's "
                f"pseudo_collate), got {type(batch).__name__}"
            )
        return _preprocess(model, batch)

    with torch.no_grad():
        images = images_from_batches(loader, size, images_of)
    return images if images is not None else torch.empty(0)


def search_detector(
    config: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str],
    teacher: str | os.PathLike[str],
    output: str | os.PathLike[str],
    recipe: str = DEFAULT_SEARCH_RECIPE,
    input_size: Sequence[int] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **search_options: Any,
):
    """``autobin search CONFIG``: search the float detector of an mmdet config.

    The detector is built from ``config`` pointed at ``data_root`` (as ``autobin mmdet-config
    --data`` does: mnist-det's classes), loaded from the float checkpoint ``teacher`` (the
    sensitivity of an untrained detector says nothing), and searched on the root's ``trainval``
    images resized to ``input_size`` (default: the root's image size).

    Args:
        config: an mmdet config (``mmdet::...`` or a path), float or binarized.
        data_root: a VOC-format root (``autobin mmdet-data mnist-det-small PATH``).
        teacher: a float detector checkpoint trained with this config (mmdet-train's .pth).
        output: the recipe YAML to write (the report goes next to it).
        recipe: the base recipe (default ``det-adabin``).
        search_options: the budget and the other keyword arguments of :func:`autobin.search`.
    """
    make_budget(**{k: search_options.get(k) for k in
                   ("max_float_macs", "max_ops", "min_binary_share", "max_size")})  # fmt: skip
    cfg = float_config(config, data_root=data_root)
    detector = build_float_detector(detector_config(cfg), os.fspath(config))
    load_float_weights(detector, os.fspath(teacher), "float checkpoint")
    size = input_size or root_image_size(data_root) or default_input_size(detector)
    data = calibration_dataset(data_root, size)
    return search(detector.eval(), data, recipe, output=output, report_dir=report_dir,
                  seed=seed, **search_options)  # fmt: skip


__all__ = [
    "DetectorObjective",
    "DetectorOutputs",
    "calibration_dataset",
    "root_image_size",
    "search_detector",
]
