"""The torchvision family: classification models from ``torchvision.models``.

torchvision models do not record the builder that made them, so the zoo record names the
builder whose model has this model's class and exactly its state shapes (built on the meta
device, nothing allocated), with ``num_classes`` read from where the shapes differ from the
builder's 1000-class default.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ...errors import BinarizeError
from .base import ModelFamily

DEFAULT_CLASSES = 1000


def classification_builders() -> list[str]:
    """Names of torchvision's classification models (``list_models(module=models)``)."""
    from torchvision import models

    return list(models.list_models(module=models))


@functools.cache
def _builder_class(name: str) -> str:
    from torchvision import models

    annotation = inspect.signature(models.get_model_builder(name)).return_annotation
    return getattr(annotation, "__name__", str(annotation))


@functools.cache
def _meta_shapes(name: str, num_classes: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """State shapes of ``get_model(name, num_classes=...)``, built on the meta device (nothing
    allocated), or on the CPU for builders that compute with tensors while building (RegNet)."""
    from torchvision import models

    try:
        with torch.device("meta"):
            model = models.get_model(name, weights=None, num_classes=num_classes)
    except (NotImplementedError, RuntimeError):
        with _uninitialised():  # allocated, never written: untouched pages cost nothing
            model = models.get_model(name, weights=None, num_classes=num_classes)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


@contextlib.contextmanager
def _uninitialised() -> Iterator[None]:
    """``torch.nn.init``'s in-place initialisers as no-ops (only the shapes are wanted)."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def _num_classes(ours: dict[str, tuple[int, ...]], default: dict[str, tuple[int, ...]]) -> int:
    """The class count that explains where ``ours`` differs from the 1000-class build."""
    if set(ours) != set(default):
        return -1
    found = set()
    for key, shape in ours.items():
        other = default[key]
        if shape == other:
            continue
        if len(shape) != len(other):
            return -1
        for a, b in zip(shape, other):
            if a != b:
                if b != DEFAULT_CLASSES:
                    return -1
                found.add(a)
    if len(found) > 1:
        return -1
    return found.pop() if found else DEFAULT_CLASSES


def identify(model: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``(builder name, kwargs)`` that rebuild ``model``'s architecture, or None."""
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    cls = type(model).__name__
    for name in classification_builders():
        if _builder_class(name) != cls:
            continue
        try:
            n = _num_classes(ours, dict(_meta_shapes(name, DEFAULT_CLASSES)))
            if n > 0 and dict(_meta_shapes(name, n)) == ours:
                return name, ({"num_classes": n} if n != DEFAULT_CLASSES else {})
        except Exception:  # a builder that cannot be built here names nothing
            continue
    return None


@functools.cache
def _crop_size(name: str) -> int | None:
    """The image size a builder's published weights are evaluated at (299 for Inception v3),
    read from the weights' metadata (nothing is downloaded)."""
    from torchvision import models

    try:
        weights = list(models.get_model_weights(name))
        crop = weights[0].transforms().crop_size if weights else None
    except Exception:  # a builder without weights metadata
        return None
    return int(crop[0]) if crop else None


class TorchvisionFamily(ModelFamily):
    """Models built by ``torchvision.models`` (classification)."""

    name = "torchvision"
    library = "torchvision"

    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        """The first conv's channels at the image size of the builder's published weights
        (224 for most, 299 for Inception v3), else 224."""
        shape = super().input_shape(model)
        found = identify(model)
        size = _crop_size(found[0]) if found is not None and len(shape) == 3 else None
        return (shape[0], size, size) if size else shape

    def matches(self, model: nn.Module) -> bool:
        return type(model).__module__.startswith("torchvision.models.")

    def architecture_name(self, model: nn.Module) -> str:
        found = identify(model)
        return found[0] if found else type(model).__name__

    def zoo_architecture(
        self, model: nn.Module, input_shape: Sequence[int] | None
    ) -> dict[str, Any] | None:
        """``{"library": "torchvision", "name": BUILDER, "kwargs": {"num_classes": N}}``, or
        None when no torchvision builder makes this architecture (a modified model)."""
        found = identify(model)
        if found is None:
            return None
        return {"library": "torchvision", "name": found[0], "kwargs": found[1]}

    def float_skeleton(self, architecture: Mapping[str, Any]) -> nn.Module:
        from torchvision import models

        name = architecture["name"]
        if name not in classification_builders():
            raise BinarizeError(
                f"{name!r} is not a torchvision classification model (see "
                "torchvision.models.list_models(module=torchvision.models))"
            )
        return models.get_model(name, weights=None, **architecture.get("kwargs", {}))


__all__ = ["TorchvisionFamily", "classification_builders", "identify"]
