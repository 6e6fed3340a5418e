"""The one table of binarization methods: name -> its conv and linear layer classes.

Every part of autobin that varies by method reads this table: the graph rewrite builds
``method_spec(name).conv`` / ``.linear``, the report counts each method's learned scalars, the
recipe schema validates ``method:`` against its names and the zoo checks stored method names.
Adding a method is one module defining the two layer classes plus one :func:`register_method`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from ..errors import check_choice

if TYPE_CHECKING:
    from .binary import BinaryConv2d, BinaryLinear

#: A method's registry name (a key of :data:`METHODS`).
Method: TypeAlias = str


@dataclass(frozen=True)
class MethodSpec:
    """One binarization method.

    Attributes:
        name: Registry name used by recipes, reports and the zoo (``adabin``).
        conv: Its ``nn.Conv2d`` subclass.
        linear: Its ``nn.Linear`` subclass.
        description: One line for error messages and ``autobin recipes``.
        uses_act_form: Whether the ``act_form`` option means anything for this method.
    """

    name: str
    conv: type[BinaryConv2d]
    linear: type[BinaryLinear]
    description: str
    uses_act_form: bool = False

    @property
    def scalar_params(self) -> tuple[str, ...]:
        """Names of the learned scalar parameters each layer of this method adds."""
        return self.conv.scalar_params

    def layer_class(self, kind: str) -> type[BinaryConv2d] | type[BinaryLinear]:
        """The class for a layer kind, ``"conv"`` or ``"linear"``."""
        return {"conv": self.conv, "linear": self.linear}[
            check_choice(kind, ("conv", "linear"), "layer kind")
        ]


_METHODS: dict[str, MethodSpec] = {}
#: Read-only view of the registered methods, in registration order.
METHODS: Mapping[str, MethodSpec] = MappingProxyType(_METHODS)


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the table; its classes' ``method`` attribute must equal its name."""
    if spec.name in _METHODS:
        raise ValueError(f"binarization method {spec.name!r} is already registered")
    for cls in (spec.conv, spec.linear):
        if cls.method != spec.name:
            raise ValueError(
                f"{cls.__name__}.method is {cls.method!r}, not the registered name {spec.name!r}"
            )
    _METHODS[spec.name] = spec
    return spec


def method_descriptions() -> dict[str, str]:
    """``{name: description}`` of every registered method (for messages and validation)."""
    return {name: spec.description for name, spec in _METHODS.items()}


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name``; a clear error lists the others when it is unknown."""
    return _METHODS[check_choice(name, method_descriptions(), "binarization method")]


__all__ = [
    "METHODS",
    "Method",
    "MethodSpec",
    "method_descriptions",
    "method_spec",
    "register_method",
]
