"""The model-family adapter: everything the graph pass and the zoo need to know about a family.

A family (timm, torchvision, mmdet, a plain ``nn.Module``) is one :class:`ModelFamily` subclass
registered with :func:`~autobin.graph.families.registry.register_family`. The pass itself
(``annotate`` -> plan -> ``rewrite`` -> report) is the same for every family; the adapter
supplies:

* ``name`` and :meth:`architecture_name` (what the report calls the model);
* :meth:`input_shape` / :meth:`example_inputs` (the input the pass runs the model on once);
* :meth:`prediction_layers` (the recipe's ``last`` role; ``first`` is the first layer to run);
* :meth:`trace_parts` (the whole model, or a detector's backbone, neck and head) and
  :meth:`leaf_modules` / :meth:`leaf_functions` (what the tracer must not enter);
* :attr:`kept_attributes` and :meth:`install` (how a rewritten part replaces the original);
* :meth:`zoo_architecture` / :meth:`float_skeleton` (the zoo's ``architecture`` record, and
  rebuilding the float model from it).

The defaults here are those of a plain ``nn.Module``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import fx, nn

from ...errors import BinarizeError
from ...model_info import keep_attribute
from ...module_tools import set_module
from .timm_layers import timm_notrace_functions, timm_notrace_modules

DEFAULT_IMAGE_SIZE = (224, 224)


class ModelFamily:
    """Adapter for one family of models; subclass it and override what differs."""

    name: ClassVar[str] = "plain"
    """The family's name (``autobin.info(model).family``)."""
    library: ClassVar[str | None] = None
    """The zoo's ``architecture.library`` of this family, if the zoo can rebuild it by name."""
    kept_attributes: ClassVar[tuple[str, ...]] = ()
    """Attributes of the model that a rewritten (traced) model keeps."""

    # ----------------------------------------------------------------- recognising
    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` belongs to this family."""
        return True

    def check(self, model: nn.Module) -> None:
        """Refuse a model of this family that the pass cannot work on (default: accept)."""

    def architecture_name(self, model: nn.Module) -> str:
        """The model's architecture as the report names it (default: its class name)."""
        return type(model).__name__

    # ----------------------------------------------------------------- inputs
    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        """The per-sample input shape, read from the model.

        Channels come from the first conv layer; the image size is the patch embedding's fixed
        size when it has one, else 224 x 224. A model whose first layer is a linear takes
        ``in_features``.

        Raises:
            BinarizeError: no conv or linear layer to read the input from.
        """
        first = first_weight_layer(model)
        if first is None:
            raise BinarizeError(
                f"{type(model).__name__} has no conv or linear layer to build an example input "
                "from; pass example_inputs=(torch.randn(1, C, H, W),) with the shape your model "
                "expects"
            )
        if isinstance(first, nn.Linear):
            return (first.in_features,)
        if len(first.kernel_size) != 2:
            return (first.in_channels, *([32] * len(first.kernel_size)))  # Conv1d/Conv3d
        return (first.in_channels, *(fixed_image_size(model) or DEFAULT_IMAGE_SIZE))

    def example_inputs(
        self, model: nn.Module, input_shape: Sequence[int] | None = None, batch: int = 1
    ) -> tuple[Any, ...]:
        """A seeded random batch of ``input_shape`` (default :meth:`input_shape`).

        On the model's device and in its floating dtype. One sample is enough: the eager pass
        runs in eval mode and only records shapes (MACs are counted per sample).
        """
        shape = tuple(input_shape) if input_shape is not None else self.input_shape(model)
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        floating = param is not None and param.is_floating_point()
        dtype = param.dtype if floating else torch.float32
        gen = torch.Generator().manual_seed(0)
        return (torch.randn((batch, *shape), generator=gen).to(device=device, dtype=dtype),)

    # ----------------------------------------------------------------- roles
    def prediction_layers(
        self, model: nn.Module, returned: Sequence[str], example_inputs: Sequence[Any] = ()
    ) -> tuple[str, ...]:
        """Names (or name prefixes) of the layers whose outputs are the model's predictions.

        These take the recipe's ``last`` role, besides the last compute layer to run.
        ``returned`` lists the compute layers whose output the model returned unchanged in
        the eager pass (run on ``example_inputs``); by default those are the prediction layers.
        """
        return tuple(returned)

    # ----------------------------------------------------------------- tracing
    def trace_parts(self, model: nn.Module) -> tuple[str, ...]:
        """Qualified names of the parts to trace (``""``: the whole model)."""
        return ("",)

    def leaf_modules(self) -> tuple[type, ...]:
        """Module types the tracer must not enter (their layers are replaced as modules).

        timm's no-trace modules are leaves in every family: timm is a dependency and its
        layers appear in models of every family.
        """
        return timm_notrace_modules()

    def leaf_functions(self) -> tuple[Any, ...]:
        """Functions the tracer records as calls instead of tracing through."""
        return timm_notrace_functions()

    # ----------------------------------------------------------------- rewriting
    def install(
        self, root: nn.Module, name: str, original: nn.Module, graph_module: fx.GraphModule
    ) -> nn.Module:
        """Put the rewritten ``graph_module`` of part ``name`` in place; return the new root.

        Default: the GraphModule replaces the part (the whole model when ``name`` is ``""``,
        keeping :attr:`kept_attributes`).
        """
        graph_module.train(original.training)
        if name:
            set_module(root, name, graph_module)
            return root
        for attr in self.kept_attributes:
            if attr in original.__dict__ or attr in type(original).__dict__:
                # read-only properties on the model's class are skipped
                with contextlib.suppress(AttributeError):
                    keep_attribute(graph_module, attr, getattr(original, attr))
        return graph_module

    # ----------------------------------------------------------------- deployment
    deploys_in_place: ClassVar[bool] = False
    """Whether :func:`autobin.deploy` returns the model itself with its parts deployed (its
    class and methods kept, e.g. a detector's ``test_step``), not a ``DeployedModel`` wrapper."""

    auto_low_precision: ClassVar[bool] = True
    """Whether deployment's ``float_parts="auto"`` may run this family's float convs in
    int8/bf16 (where it may not, ``auto`` means float32 in autobin's kernel, ``"fp32-kernel"``;
    explicit choices still apply)."""

    def graph_views(self, model: nn.Module) -> list[tuple[str, nn.Module, fx.GraphModule]]:
        """The traced parts of a rewritten ``model`` whose graph is not a ``GraphModule`` in
        the module tree (a family whose :meth:`install` keeps the part's own class), each as
        ``(name, part, view)``: ``view`` is a GraphModule of the part's graph sharing its
        children, for passes that edit graphs (deployment). Put back with :meth:`install`.
        Default: none (the GraphModules are in the tree)."""
        return []

    def float32_layers(self, model: nn.Module) -> tuple[str, ...]:
        """Float layers that deployment keeps in float32 whatever its ``float_parts`` choice
        (default: none)."""
        return ()

    # ----------------------------------------------------------------- the zoo
    def zoo_architecture(
        self, model: nn.Module, input_shape: Sequence[int] | None
    ) -> dict[str, Any] | None:
        """The zoo's ``architecture`` record of the float ``model``, or None if the zoo cannot
        rebuild it by name (then publishing needs ``arch=``)."""
        return None

    def float_skeleton(self, architecture: Mapping[str, Any]) -> nn.Module:
        """The float model an ``architecture`` record describes (weights not loaded)."""
        raise BinarizeError(f"the {self.name} family cannot rebuild models from the zoo")


def first_weight_layer(model: nn.Module) -> nn.Module | None:
    """The first conv (any dimension) or linear layer in module order."""
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return module
    return None


def image_size(value: Any) -> tuple[int, int] | None:
    """``value`` as ``(H, W)`` if it is a positive int or a pair of them, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None


def fixed_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The image size a model is built for, where it has one (ViT/Swin/... patch embedding)."""
    patch_embed = getattr(model, "patch_embed", None)
    if isinstance(patch_embed, nn.Module) and not getattr(patch_embed, "dynamic_img_size", False):
        size = image_size(getattr(patch_embed, "img_size", None))
        if size is not None:
            return size
    return image_size(getattr(model, "img_size", None))


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "ModelFamily",
    "first_weight_layer",
    "fixed_image_size",
    "image_size",
]
