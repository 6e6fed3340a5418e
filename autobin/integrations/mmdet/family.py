"""The mmdet model family: how the graph pass sees an mmdet detector.

* the parts traced are the detector's children (backbone, neck, heads), not the detector,
  whose ``forward`` branches on its ``mode``; ``data_preprocessor`` runs outside ``forward``;
* the example input is one normalized image at the anchor generator's size (SSD), else 300,
  with its data sample (image metas: two-stage and DETR-style detectors read them);
* the prediction layers (the recipe's ``last`` role) are the layers nearest to what the
  detector returns in ``mode='tensor'`` (:func:`prediction_layers_of`): the heads' final
  classification and box convs (or linears), also where their output passes through a per-level
  ``Scale``, an ``exp`` or another op without weights before it is returned (FCOS, ATSS, GFL,
  RTMDet, ...);
* a traced part keeps its mmdet class (mmdet calls its methods: ``bbox_head.loss``,
  ``backbone.train`` with frozen stages): the rewritten graph's code becomes that module's
  ``forward`` and its rewritten children are installed in it;
* the zoo record embeds the float detector's model config (:func:`.build.architecture`), and
  the float skeleton is built from it;
* :func:`autobin.deploy` deploys a detector in place (it stays an mmdet detector whose
  ``test_step``/``predict`` work): each traced part's graph is edited through a GraphModule view
  sharing the part's children (:meth:`MMDetFamily.graph_views`) and installed back; the
  prediction convs stay float32 in torch (:meth:`MMDetFamily.float32_layers`), and
  ``float_parts="auto"`` keeps every other float conv float32, in autobin's kernel
  (:attr:`MMDetFamily.auto_low_precision`).

Registered with :func:`autobin.graph.register_family` when ``autobin.integrations.mmdet`` is
imported.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from ...graph import ModelFamily
from ...graph.eager_pass import tensors_in
from ...graph.families.base import image_size
from ...graph.tracer import is_compute_layer, keep_hierarchy
from ...module_tools import eval_mode, set_module
from .build import (
    ARCHITECTURE_ATTRIBUTE,
    build_float_detector,
    is_detector,
    model_config_from_text,
)
from .errors import DetectorConfigError

DEFAULT_INPUT_SIZE = (300, 300)
SKIPPED_PARTS = ("data_preprocessor",)  # runs outside forward(); no layers to binarize
GRAPH_ATTRIBUTE = "_autobin_graph"
"""Attribute of a rewritten part: the fx graph its ``forward`` runs (:func:`graph_of`)."""


def default_input_size(detector: nn.Module) -> tuple[int, int]:
    """``(H, W)`` of the example image: the anchor generator's ``input_size`` (SSD), else 300.

    mmdet's ``SSDAnchorGenerator`` keeps ``input_size`` only when it derives its anchor sizes
    from it; with explicit ``min_sizes``/``max_sizes`` (anchors re-derived for a small input,
    e.g. ``configs/mmdet/ssd128_r18_mnist-det-small.py``) the size is read from the
    ``anchor_generator`` of the model config the detector was built from.
    """
    head = getattr(detector, "bbox_head", None)
    size = image_size(getattr(getattr(head, "prior_generator", None), "input_size", None))
    return size or _configured_input_size(detector) or DEFAULT_INPUT_SIZE


def _configured_input_size(detector: nn.Module) -> tuple[int, int] | None:
    """The ``bbox_head.anchor_generator.input_size`` of the detector's recorded model config."""
    record = detector.__dict__.get(ARCHITECTURE_ATTRIBUTE)
    text = record.get("config") if isinstance(record, Mapping) else None
    if not isinstance(text, str):
        return None
    head = model_config_from_text(text, "the detector's model config").get("bbox_head")
    generator = head.get("anchor_generator") if isinstance(head, Mapping) else None
    return image_size(generator.get("input_size")) if isinstance(generator, Mapping) else None


def image_data_samples(images: torch.Tensor) -> list:
    """One ``DetDataSample`` per image of ``images`` with the metas of an unscaled, unpadded
    image of that size (two-stage detectors' RPN and DETR-style masks read them)."""
    from mmdet.structures import DetDataSample

    height, width = (int(v) for v in images.shape[-2:])
    metas = {"img_shape": (height, width), "ori_shape": (height, width),
             "pad_shape": (height, width), "batch_input_shape": (height, width),
             "scale_factor": (1.0, 1.0)}  # fmt: skip
    return [DetDataSample(metainfo=metas) for _ in range(images.shape[0])]


def prediction_layers_of(
    detector: nn.Module, inputs: torch.Tensor, data_samples: list | None = None
) -> list[str]:
    """Names of the conv and linear layers nearest to the detector's raw predictions.

    Runs ``detector(inputs, data_samples)`` (``mode='tensor'``; default samples:
    :func:`image_data_samples`) once in eval mode with autograd on and walks the autograd graph
    back from every returned tensor and every tensor a dense head's ``forward`` returned (a
    two-stage detector returns its RoI head's outputs, not its RPN's), once more with the dense
    heads themselves in training mode (VFNet returns its first boxes only in training; their
    norm layers stay in eval mode); a walk stops at the first
    conv or linear layer it reaches. So a layer counts when its output is returned unchanged,
    and also when it passes through ops without weights first (a per-level ``Scale``, ``exp``,
    ``relu``, a reshape, a sum with detached reference points), never when another weight layer
    is in between. Names are in the order the walk meets them, each once.
    """
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    producers: dict[Any, str] = {}  # the autograd node that made a layer's output -> the layer
    kept: list[torch.Tensor] = []  # outputs alive until the walk ends (their nodes stay unique)
    head_outputs: list[Any] = []  # what dense heads returned (a two-stage detector's RPN)

    def hook(name: str):
        def record(_module, _args, output):
            if isinstance(output, torch.Tensor) and output.grad_fn is not None:
                producers.setdefault(output.grad_fn, name)
                kept.append(output)

        return record

    modules = list(detector.named_modules())
    heads = [m for _, m in modules if isinstance(m, BaseDenseHead)]
    handles = [m.register_forward_hook(hook(n)) for n, m in modules if is_compute_layer(m)]
    handles += [m.register_forward_hook(lambda _m, _a, out: head_outputs.append(out))
                for m in heads]  # fmt: skip
    images = inputs.detach().requires_grad_(True)
    samples = data_samples or image_data_samples(images)
    results = []
    try:
        with eval_mode(detector), torch.enable_grad():
            results.append(detector(images, samples))
            # heads that refine their boxes return the first ones only in training (VFNet):
            # run once more with the heads (not their norm layers) in training mode
            for head in heads:
                head.training = True
            with contextlib.suppress(Exception):  # a head that needs training-only inputs
                results.append(detector(images, samples))
    finally:
        for handle in handles:
            handle.remove()
    found: list[str] = []
    seen: set[Any] = set()
    returned = [*tensors_in(results), *tensors_in(head_outputs)]
    stack = [t.grad_fn for t in returned if t.grad_fn is not None][::-1]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in producers:
            found.append(producers[node])
            continue
        stack.extend(n for n, _ in reversed(node.next_functions) if n is not None)
    return list(dict.fromkeys(found))


def graph_of(module: nn.Module) -> fx.Graph | None:
    """The rewritten fx graph a part's ``forward`` runs, if it was traced."""
    return module.__dict__.get(GRAPH_ATTRIBUTE)


def prediction_convs(detector: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Names of the convs nearest to the detector's raw predictions on ``inputs``.

    The convs among :func:`prediction_layers_of`: their outputs the detector returns in
    ``mode='tensor'``, unchanged or through ops without weights (a per-level ``Scale``,
    ``exp``, ...), never through another weight layer.
    """
    convs = {n for n, m in detector.named_modules() if isinstance(m, nn.Conv2d)}
    return [n for n in prediction_layers_of(detector, inputs) if n in convs]


class MMDetFamily(ModelFamily):
    """mmdet detectors (``mmdet.models`` detectors with a backbone)."""

    name = "mmdet"
    library = "mmdet"
    deploys_in_place = True
    auto_low_precision = False
    """Measured on the committed ``ssd128_r18.adabin_mnist-det-small`` (VOC mAP@0.5 on its 200
    test images; fake-quantized 0.8136): deployed with float32 float convs 0.8161, with every
    float conv of the backbone and neck in bf16 0.8007, in int8 0.8000, int8 stem + bf16
    downsample convs 0.7943: 1.5-2.2 points lost, far over the 0.1-point limit (detections are
    more sensitive than a classifier's top-1). So ``auto`` keeps a detector's float convs
    float32, run by autobin's kernel (``"fp32-kernel"``: inside the compiled chains, the Maxout
    and packing fused): on the same entry mAP 0.8159 vs 0.8161 with torch's float32 convs."""

    def matches(self, model: nn.Module) -> bool:
        from mmdet.models.detectors import BaseDetector

        return isinstance(model, BaseDetector) and is_detector(model)

    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        return (3, *default_input_size(model))

    def prediction_layers(
        self, model: nn.Module, returned: Sequence[str], example_inputs: Sequence[Any] = ()
    ) -> tuple[str, ...]:
        """The layers the detector returns, and those nearest to its returned tensors
        (:func:`prediction_layers_of` on the example image)."""
        inputs = tuple(example_inputs) or self.example_inputs(model)
        samples = inputs[1] if len(inputs) > 1 and isinstance(inputs[1], list) else None
        found = prediction_layers_of(model, inputs[0], samples)
        return tuple(dict.fromkeys([*returned, *found]))

    def example_inputs(
        self, model: nn.Module, input_shape: Sequence[int] | None = None, batch: int = 1
    ) -> tuple[Any, ...]:
        """A seeded random image batch and one data sample per image with its metas
        (:func:`image_data_samples`): ``detector(images, data_samples)``."""
        (images,) = super().example_inputs(model, input_shape, batch)
        return (images, image_data_samples(images))

    def trace_parts(self, model: nn.Module) -> tuple[str, ...]:
        return tuple(name for name, _ in model.named_children() if name not in SKIPPED_PARTS)

    def install(
        self, root: nn.Module, name: str, original: nn.Module, graph_module: fx.GraphModule
    ) -> nn.Module:
        """Keep the part's mmdet class: its ``forward`` runs the rewritten graph, and the
        graph's replaced and new children are installed in it."""
        for key, child in graph_module._modules.items():
            if original._modules.get(key) is not child:
                original._modules[key] = child
        for key, buffer in graph_module._buffers.items():  # tensors fx captured while tracing
            if key not in original._buffers:
                original.register_buffer(key, buffer, persistent=False)
        original.forward = types.MethodType(type(graph_module).forward, original)
        original.__dict__[GRAPH_ATTRIBUTE] = graph_module.graph
        set_module(root, name, original)
        return root

    def graph_views(self, model: nn.Module) -> list[tuple[str, nn.Module, fx.GraphModule]]:
        """Every rewritten part (a module with :func:`graph_of`) as a GraphModule view that
        shares its children; :meth:`install` puts an edited view back."""
        views = []
        for name, part in model.named_modules():
            graph = graph_of(part)
            if graph is None:
                continue
            if not name or any(name.startswith(f"{other}.") for other, _, _ in views):
                raise DetectorConfigError(
                    f"rewritten part {name or '<root>'!r} of {type(model).__name__} is the "
                    "detector itself or inside another rewritten part; binarize the detector "
                    "with autobin.integrations.mmdet.binarize_detector"
                )
            view = fx.GraphModule(part, graph, type(part).__name__)
            keep_hierarchy(part, view)
            views.append((name, part, view))
        return views

    def float32_layers(self, model: nn.Module) -> tuple[str, ...]:
        """The head's prediction convs (:func:`prediction_convs`, on one example image): the
        raw detections stay those of the float layers."""
        return tuple(prediction_convs(model, self.example_inputs(model)[0]))

    def zoo_architecture(
        self, model: nn.Module, input_shape: Sequence[int] | None
    ) -> dict[str, Any] | None:
        """The float detector's model config (recorded when autobin built it), or None."""
        record = model.__dict__.get(ARCHITECTURE_ATTRIBUTE)
        return dict(record) if isinstance(record, Mapping) else None

    def float_skeleton(self, architecture: Mapping[str, Any]) -> nn.Module:
        text = architecture.get("config")
        if not isinstance(text, str):
            raise DetectorConfigError(
                "an mmdet architecture record needs the detector's model config (Python config "
                "text) under 'config'"
            )
        source = f"mmdet architecture {architecture.get('name')!r}"
        return build_float_detector(model_config_from_text(text, source), source)


__all__ = [
    "MMDetFamily",
    "default_input_size",
    "graph_of",
    "image_data_samples",
    "prediction_convs",
    "prediction_layers_of",
]
