"""What autobin knows about a binarized model: one :class:`ModelInfo` under one attribute.

:func:`autobin.binarize` attaches it; :func:`info` (``autobin.info``) reads it. It holds the
model family, the zoo architecture record, the recipe, the report and the float model the
binary model was made from. The float model is the default teacher of :func:`autobin.finetune`
and is held by a :class:`FloatReference`, which

* is not a submodule: it adds nothing to ``state_dict()``, ``parameters()`` or ``.to()``;
* pickles as an empty reference: ``torch.save(bnn)`` stores the binary model only (the float
  model would double the file), so a model loaded back has no attached teacher and
  :func:`finetune` asks for one explicitly;
* is shared by ``copy.deepcopy``: a copy of a binary model refers to the same (frozen) float
  model instead of copying it or dropping it.

This module sits at the bottom of the package (training, the zoo and deployment read it
without importing the graph pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

_PRESERVED = "_user_preserved_attributes"  # torch.fx: attributes a GraphModule deepcopy keeps


class FloatReference:
    """A reference to a float model that pickles as empty and deep-copies as shared.

    Attributes:
        model: the float model, or None after a pickle round trip.
    """

    __slots__ = ("model",)

    def __init__(self, model: nn.Module | None) -> None:
        self.model = model

    def __reduce__(self) -> tuple[Any, ...]:
        return (FloatReference, (None,))

    def __deepcopy__(self, memo: dict[int, Any]) -> FloatReference:
        return FloatReference(self.model)

    def __repr__(self) -> str:
        kept = type(self.model).__name__ if self.model is not None else "nothing (unpickled)"
        return f"FloatReference({kept})"


def keep_attribute(module: nn.Module, name: str, value: Any) -> None:
    """Set a plain attribute on ``module`` that survives ``copy.deepcopy``.

    A ``torch.fx.GraphModule`` drops unknown attributes when deep-copied; attributes recorded in
    its ``meta`` are restored on the copy.
    """
    object.__setattr__(module, name, value)
    if isinstance(module, fx.GraphModule):
        module.meta.setdefault(_PRESERVED, {})[name] = value


INFO_ATTRIBUTE = "autobin_info"
"""The one attribute of a binarized model that holds its :class:`ModelInfo`."""


@dataclass
class ModelInfo:
    """What autobin knows about a binarized model.

    Attributes:
        family: the model family's name (``timm``, ``torchvision``, ``mmdet``, ``plain``).
        architecture: the zoo's ``architecture`` record of the float model (``{"library",
            "name", "kwargs"}``, plus ``config`` for mmdet), or None when the zoo cannot rebuild
            it by name.
        recipe: the recipe it was binarized with.
        report: the :class:`~autobin.BinarizeReport`.
        deployment: the ``DeploySummary`` when :func:`autobin.deploy` made the model (None for
            a fake-quantized model).
    """

    family: str
    architecture: dict[str, Any] | None
    recipe: Any  # autobin.Recipe
    report: Any  # autobin.BinarizeReport
    float_reference: FloatReference = field(default_factory=lambda: FloatReference(None),
                                            repr=False)  # fmt: skip
    deployment: Any = field(default=None, repr=False)  # autobin.deploy.DeploySummary

    @property
    def float_model(self) -> nn.Module | None:
        """The float model it was made from (the default teacher), if still known."""
        return self.float_reference.model


def attach_info(model: nn.Module, record: ModelInfo) -> None:
    """Attach ``record`` to ``model`` (kept by deep copies of GraphModules too)."""
    keep_attribute(model, INFO_ATTRIBUTE, record)


def info(model: nn.Module) -> ModelInfo | None:
    """What autobin knows about ``model``: a :class:`ModelInfo`, or None if ``binarize`` did not
    make it.

    Example::

        bnn = autobin.binarize(timm.create_model("resnet18"))
        autobin.info(bnn).report.totals["binary_mac_share"]
    """
    found = getattr(model, INFO_ATTRIBUTE, None)
    return found if isinstance(found, ModelInfo) else None


def float_model_of(model: nn.Module) -> nn.Module | None:
    """The float model a binary model was made from (its default teacher), if known.

    None for a model that was not made by :func:`autobin.binarize`, or that was pickled and
    loaded back (``torch.save`` does not store the float model).
    """
    record = info(model)
    return record.float_model if record is not None else None


__all__ = [
    "INFO_ATTRIBUTE",
    "FloatReference",
    "ModelInfo",
    "attach_info",
    "float_model_of",
    "info",
    "keep_attribute",
]
