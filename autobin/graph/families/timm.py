"""The timm family: models made by ``timm.create_model`` (they carry a ``pretrained_cfg``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ...errors import BinarizeError
from ...timm_metadata import timm_config
from .base import ModelFamily, first_weight_layer, fixed_image_size

TIMM_ATTRIBUTES = (
    "pretrained_cfg",
    "default_cfg",
    "num_classes",
    "num_features",
    "head_hidden_size",
    "global_pool",
    "feature_info",
    "in_chans",
)
"""Model metadata kept on a traced result (timm's attributes users and the zoo rely on)."""


def _space_to_depth_factor(model: nn.Module) -> int:
    """How many input pixels a space-to-depth stem folds into channels before the first conv."""
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return 1
        if type(module).__name__ in ("SpaceToDepth", "SpaceToDepthModule"):
            block = getattr(module, "bs", None) or getattr(module, "block_size", None)
            if isinstance(block, int) and block > 0:
                return block * block
    return 1


class TimmFamily(ModelFamily):
    """timm models (and models in timm's style): architecture, input size and classifier come
    from ``pretrained_cfg``."""

    name = "timm"
    library = "timm"
    kept_attributes = TIMM_ATTRIBUTES

    def matches(self, model: nn.Module) -> bool:
        return bool(timm_config(model))

    def architecture_name(self, model: nn.Module) -> str:
        arch = timm_config(model).get("architecture")
        return arch if isinstance(arch, str) else type(model).__name__

    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        """Channels: the model's ``in_chans``, else the first conv's (divided back through a
        space-to-depth stem); size: the patch embedding's fixed size, else
        ``pretrained_cfg['input_size']``."""
        cfg_size = timm_config(model).get("input_size")
        cfg_size = tuple(int(d) for d in cfg_size) if cfg_size else None
        first = first_weight_layer(model)
        if first is None or isinstance(first, nn.Linear) or len(first.kernel_size) != 2:
            if cfg_size and len(cfg_size) == 3 and (first is None or isinstance(first, nn.Linear)):
                return cfg_size  # a linear patch embedding takes images
            return super().input_shape(model)
        channels = getattr(model, "in_chans", None)
        if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
            channels = first.in_channels // _space_to_depth_factor(model)
        size = fixed_image_size(model)
        if size is None and cfg_size and len(cfg_size) == 3:
            size = cfg_size[1:]
        return (channels, *(size or super().input_shape(model)[1:]))

    def prediction_layers(
        self, model: nn.Module, returned: Sequence[str], example_inputs: Sequence[Any] = ()
    ) -> tuple[str, ...]:
        """The classifier ``pretrained_cfg`` declares (one name or several, e.g. distilled
        heads)."""
        clf = timm_config(model).get("classifier")
        if isinstance(clf, str):
            return (clf,)
        if isinstance(clf, (list, tuple)):
            return tuple(c for c in clf if isinstance(c, str))
        return ()

    def zoo_architecture(
        self, model: nn.Module, input_shape: Sequence[int] | None
    ) -> dict[str, Any] | None:
        """``{"library": "timm", "name": ARCH, "kwargs": {num_classes, in_chans}}``."""
        cfg = timm_config(model)
        if not isinstance(cfg.get("architecture"), str):
            return None
        return {"library": "timm", "name": cfg["architecture"],
                "kwargs": creation_kwargs(model, cfg, input_shape)}  # fmt: skip

    def float_skeleton(self, architecture: Mapping[str, Any]) -> nn.Module:
        import timm

        from ...models import CIFAR_MODELS  # noqa: F401  registers autobin's CIFAR models

        name = architecture["name"]
        if not timm.is_model(name):
            raise BinarizeError(
                f"{name!r} is not a timm architecture (see timm.list_models()); for a model "
                "built by hand pass rebuild=<function(config) -> binarized nn.Module>"
            )
        return timm.create_model(name, pretrained=False, **architecture.get("kwargs", {}))


def creation_kwargs(
    model: nn.Module, cfg: Mapping[str, Any], input_shape: Sequence[int] | None
) -> dict[str, Any]:
    """The ``timm.create_model`` arguments that rebuild ``model``: ``num_classes`` and, when
    it was made for other input channels than timm's default, ``in_chans``."""
    kwargs: dict[str, Any] = {}
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        num_classes = cfg.get("num_classes")
    if isinstance(num_classes, int):
        kwargs["num_classes"] = num_classes
    default = cfg.get("input_size")
    if (
        input_shape is not None
        and len(input_shape) == 3
        and isinstance(default, (list, tuple))
        and int(input_shape[0]) != int(default[0])
    ):
        kwargs["in_chans"] = int(input_shape[0])
    return kwargs


__all__ = ["TIMM_ATTRIBUTES", "TimmFamily", "creation_kwargs", "timm_config"]
