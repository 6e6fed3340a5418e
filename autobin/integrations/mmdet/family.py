"""The mmdet model family: how the graph pass sees an mmdet detector.

* the parts traced are the detector's children (backbone, neck, heads), not the detector,
  whose ``forward`` branches on its ``mode``; ``data_preprocessor`` runs outside ``forward``;
* the example input is one normalized image at the anchor generator's size (SSD), else 300;
* the prediction layers (the recipe's ``last`` role) are the layers whose outputs the detector
  returns unchanged in ``mode='tensor'`` (the heads' final classification and box convs);
* a traced part keeps its mmdet class (mmdet calls its methods: ``bbox_head.loss``,
  ``backbone.train`` with frozen stages): the rewritten graph's code becomes that module's
  ``forward`` and its rewritten children are installed in it;
* the zoo record embeds the float detector's model config (:func:`.build.architecture`), and
  the float skeleton is built from it;
* :func:`autobin.deploy` deploys a detector in place (it stays an mmdet detector whose
  ``test_step``/``predict`` work): each traced part's graph is edited through a GraphModule view
  sharing the part's children (:meth:`MMDetFamily.graph_views`) and installed back; the
  prediction convs stay float32 (:meth:`MMDetFamily.float32_layers`), and ``float_parts="auto"``
  keeps every float conv float32 (:attr:`MMDetFamily.auto_low_precision`).

Registered with :func:`autobin.graph.register_family` when ``autobin.integrations.mmdet`` is
imported.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from ...graph import ModelFamily
from ...graph.eager_pass import tensors_in
from ...graph.tracer import keep_hierarchy
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
    """``(H, W)`` of the example image: the anchor generator's ``input_size`` (SSD), else 300."""
    head = getattr(detector, "bbox_head", None)
    size = getattr(getattr(head, "prior_generator", None), "input_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    return DEFAULT_INPUT_SIZE


def graph_of(module: nn.Module) -> fx.Graph | None:
    """The rewritten fx graph a part's ``forward`` runs, if it was traced."""
    return module.__dict__.get(GRAPH_ATTRIBUTE)


def prediction_convs(detector: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Names of the convs whose outputs the detector returns as raw predictions.

    Runs ``detector(inputs)`` (``mode='tensor'``) once in eval mode without gradients; a conv is
    a prediction conv when one of the returned tensors is its output object itself.
    """
    outputs: dict[int, tuple[str, torch.Tensor]] = {}

    def hook(name):
        def record(_module, _args, output):
            if isinstance(output, torch.Tensor):
                outputs[id(output)] = (name, output)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in detector.named_modules()
               if isinstance(m, nn.Conv2d)]  # fmt: skip
    try:
        with eval_mode(detector), torch.no_grad():
            result = detector(inputs)
    finally:
        for h in handles:
            h.remove()
    names = [outputs[id(t)][0] for t in tensors_in(result)
             if id(t) in outputs and outputs[id(t)][1] is t]  # fmt: skip
    return list(dict.fromkeys(names))


class MMDetFamily(ModelFamily):
    """mmdet detectors (``mmdet.models`` detectors with a backbone)."""

    name = "mmdet"
    library = "mmdet"
    deploys_in_place = True
    auto_low_precision = False
    """Measured on the committed ``ssd128_r18.adabin_mnist-det-small`` (VOC mAP on the 200
    regenerated test images): an int8 stem costs 0.0037 mAP and a bf16 one 0.0029 against the
    float32 deployment (0.0322), over the 0.1-point limit; detections are more sensitive than a
    classifier's top-1 to a perturbed stem. So ``auto`` keeps a detector's float convs float32."""

    def matches(self, model: nn.Module) -> bool:
        from mmdet.models.detectors import BaseDetector

        return isinstance(model, BaseDetector) and is_detector(model)

    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        return (3, *default_input_size(model))

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


__all__ = ["MMDetFamily", "default_input_size", "graph_of", "prediction_convs"]
