"""``autobin.BinarizedDetector``: a binarized mmdet detector that trains with distillation.

Registered in mmengine's model registry under the scope ``autobin``, so an mmdet config uses
it like any other model::

    custom_imports = dict(imports=['autobin.integrations.mmdet'], allow_failed_imports=False)
    model = dict(type='autobin.BinarizedDetector', detector=_base_.model,
                 recipe='ssd300-adabin', teacher=dict(checkpoint='work/float_ssd/epoch_24.pth'),
                 distill=dict(feature_weight=1.0, cls_weight=1.0, temperature=1.0))

The float detector is built from ``detector`` (pretrained downloads removed), initialised by
mmdet, loaded from the teacher checkpoint when one is given (the student starts from the same
float weights), copied as the frozen eval-mode teacher, and binarized with ``recipe``.
In ``mode='loss'`` the student's own mmdet losses are computed by mmdet's code and the
distillation terms (:mod:`.distill`) are added under their own names; ``predict`` and
``tensor`` are the student detector's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry
from torch import nn

from ...model_info import attach_info, info
from .binarize import binarize_detector
from .build import build_float_detector
from .distill import DistillConfig, distill_losses
from .errors import TeacherCheckpointError
from .offline import load_checkpoint_file

MODELS = Registry(
    "model", parent=MMENGINE_MODELS, scope="autobin", locations=["autobin.integrations.mmdet"]
)
"""autobin's child of mmengine's model registry (scope ``autobin``)."""

TEACHER_KEYS = ("checkpoint", "init_student")
DEFAULT_DISTILL: Mapping[str, Any] = MappingProxyType({})
"""Distillation on, with :class:`DistillConfig`'s default weights."""


def _teacher_options(teacher: Any) -> tuple[str | None, bool]:
    if teacher is None:
        return None, True
    if isinstance(teacher, str):
        return teacher, True
    if not isinstance(teacher, Mapping) or set(teacher) - set(TEACHER_KEYS):
        raise TeacherCheckpointError(
            f"teacher must be None, a checkpoint path or dict(checkpoint=PATH, init_student=True)"
            f", got {teacher!r}"
        )
    return teacher.get("checkpoint"), bool(teacher.get("init_student", True))


def load_float_weights(
    detector: nn.Module, checkpoint: str, what: str = "teacher checkpoint"
) -> None:
    """Load a float detector checkpoint strictly, with an error naming the file (as ``what``)
    and the fix."""
    state = load_checkpoint_file(checkpoint, what)
    try:
        detector.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()][1:4]
        raise TeacherCheckpointError(
            f"{what} {checkpoint} does not fit the detector "
            f"{type(detector).__name__}: {' '.join(lines)[:400]}. Give the checkpoint of a "
            "float detector trained with the same model config (same classes and layers), "
            "not a binarized one"
        ) from exc


@MODELS.register_module(name="BinarizedDetector")
class BinarizedDetector(BaseModel):
    """A binarized mmdet detector with an optional frozen float teacher for distillation.

    Args:
        detector: the float detector's model config (e.g. ``_base_.model``).
        recipe: recipe name or YAML path (``ssd300-adabin``, ``det-adabin``, ...).
        teacher: None (the teacher is a copy of the student's starting float weights), a
            checkpoint path, or ``dict(checkpoint=PATH, init_student=True)``; with
            ``init_student`` the student is binarized from the checkpoint's weights too.
        distill: ``dict(feature_weight=1.0, cls_weight=1.0, temperature=1.0)`` (the default;
            missing keys take these values); None trains without distillation and without a
            teacher.
        input_size: ``(H, W)`` of the example image for binarization (default: SSD's anchor
            input size, else 300).
        data_preprocessor, init_cfg: ignored (the detector's own preprocessor is used; the
            weights are initialised at construction).
    """

    def __init__(
        self,
        detector: Mapping[str, Any],
        recipe: str = "det-adabin",
        teacher: Any = None,
        distill: Mapping[str, Any] | None = DEFAULT_DISTILL,
        input_size: tuple[int, int] | list[int] | None = None,
        data_preprocessor: Any = None,
        init_cfg: Any = None,
    ) -> None:
        checkpoint, init_student = _teacher_options(teacher)
        distill_config = DistillConfig.from_dict(distill) if distill is not None else None
        float_detector = build_float_detector(detector, "BinarizedDetector.detector")
        teacher_model = None
        if checkpoint is not None:
            if init_student:
                load_float_weights(float_detector, checkpoint)
                teacher_model = copy.deepcopy(float_detector)
            else:
                teacher_model = copy.deepcopy(float_detector)
                load_float_weights(teacher_model, checkpoint)
        elif distill_config is not None and distill_config.enabled:
            teacher_model = copy.deepcopy(float_detector)
        if distill_config is None or not distill_config.enabled:
            teacher_model = None
        student = binarize_detector(float_detector, recipe, input_size=input_size, inplace=True)
        super().__init__(data_preprocessor=student.data_preprocessor)
        self.detector = student
        self.distill_config = distill_config
        self._teacher_holder = [self._freeze(teacher_model)]
        attach_info(self, info(student))  # what autobin knows about the student, here too
        self.teacher_checkpoint = checkpoint

    # ------------------------------------------------------------------ teacher
    @staticmethod
    def _freeze(teacher: nn.Module | None) -> nn.Module | None:
        if teacher is None:
            return None
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen float teacher (not a submodule: not in the state dict or optimizer)."""
        return self._teacher_holder[0]

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn)
        return self

    def train(self, mode: bool = True) -> BinarizedDetector:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def init_weights(self) -> None:
        """No-op: the weights were initialised (and binarized) when the model was built."""

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor"):
        """mmengine's three modes: ``loss`` (dict of losses), ``predict``, ``tensor``."""
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.detector.predict(inputs, data_samples)
        if mode == "tensor":
            return self.detector._forward(inputs, data_samples)
        raise ValueError(f"invalid mode {mode!r}; BinarizedDetector supports loss, predict, tensor")

    def loss(self, inputs: torch.Tensor, data_samples) -> dict[str, torch.Tensor]:
        """mmdet's detection losses of the student plus the distillation terms."""
        config = self.distill_config
        if self.teacher is None or config is None or not config.enabled:
            return self.detector.loss(inputs, data_samples)
        student = self.detector
        head = getattr(student, "bbox_head", None)
        feature_part = student.neck if getattr(student, "with_neck", False) else student.backbone
        captured: dict[str, Any] = {}

        def keep(key):
            def hook(_module, _args, output):
                captured.setdefault(key, output)

            return hook

        handles = [feature_part.register_forward_hook(keep("feats"))]
        if head is not None:
            handles.append(head.register_forward_hook(keep("head")))
        try:
            losses = student.loss(inputs, data_samples)
        finally:
            for h in handles:
                h.remove()
        teacher = self.teacher
        with torch.no_grad():
            t_feats = teacher.extract_feat(inputs)
            t_head = teacher.bbox_head(t_feats) if head is not None else None
        if head is None:
            config = DistillConfig(config.feature_weight, 0.0, config.temperature)
        losses.update(
            distill_losses(
                config,
                captured["feats"],
                t_feats,
                captured["head"][0] if head is not None else [],
                t_head[0] if t_head is not None else [],
                channels=getattr(head, "cls_out_channels", 1),
                sigmoid=bool(getattr(head, "use_sigmoid_cls", False)),
            )
        )
        return losses


__all__ = ["MODELS", "BinarizedDetector", "load_float_weights"]
