"""The float model a binary model was made from, kept beside it but never saved with it.

:func:`autobin.binarize` attaches the float model to its result as the default teacher of
:func:`autobin.finetune`. It is held by a :class:`FloatReference`, which

* is not a submodule: it adds nothing to ``state_dict()``, ``parameters()`` or ``.to()``;
* pickles as an empty reference: ``torch.save(bnn)`` stores the binary model only (the float
  model would double the file), so a model loaded back has no attached teacher and
  :func:`finetune` asks for one explicitly;
* is shared by ``copy.deepcopy``: a copy of a binary model refers to the same (frozen) float
  model instead of copying it or dropping it.
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

FLOAT_MODEL_ATTR = "_autobin_float_model"
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


def attach_float_model(binary: nn.Module, float_model: nn.Module) -> None:
    """Record ``float_model`` as the float model ``binary`` was made from."""
    keep_attribute(binary, FLOAT_MODEL_ATTR, FloatReference(float_model))


def float_model_of(model: nn.Module) -> nn.Module | None:
    """The float model a binary model was made from (its default teacher), if known.

    None for a model that was not made by :func:`autobin.binarize`, or that was pickled and
    loaded back (``torch.save`` does not store the float model).
    """
    found = getattr(model, FLOAT_MODEL_ATTR, None)
    if isinstance(found, FloatReference):
        return found.model
    return found if isinstance(found, nn.Module) else None


__all__ = [
    "FLOAT_MODEL_ATTR",
    "FloatReference",
    "attach_float_model",
    "float_model_of",
    "keep_attribute",
]
