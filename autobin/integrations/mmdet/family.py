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
  the float skeleton is built from it.

Registered with :func:`autobin.graph.register_family` when ``autobin.integrations.mmdet`` is
imported.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

from torch import fx, nn

from ...graph import ModelFamily
from ...module_tools import set_module
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


class MMDetFamily(ModelFamily):
    """mmdet detectors (``mmdet.models`` detectors with a backbone)."""

    name = "mmdet"
    library = "mmdet"

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


__all__ = ["MMDetFamily", "default_input_size", "graph_of"]
