"""The plan: what annotate decided for every layer, activation and shortcut of a model.

:func:`~autobin.graph.annotate.annotate` makes a :class:`Plan`; :func:`~autobin.graph.rewrite.
rewrite` applies it (each entry applies itself) and the report summarises it, so
:func:`autobin.explain` and :func:`autobin.binarize` always agree.

One entry type per kind: :class:`LayerEntry` (a conv or linear), :class:`ActivationEntry` and
:class:`ShortcutEntry`; the decision is a :class:`Decision`, and the way an entry is handled a
:class:`Handling`.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import fx, nn

from ..nn import Maxout, method_spec
from ..recipes import Recipe
from .conv_variants import as_plain_layer
from .dataflow import NORM_TYPES
from .tracer import Region


class Rewrite(Protocol):
    """The model being rewritten, as entries see it (:class:`autobin.graph.rewrite.Rewrite`)."""

    device: torch.device | None

    def get(self, name: str) -> nn.Module:
        """The module at qualified ``name`` as the rewritten model will run it."""

    def replace(self, name: str, module: nn.Module) -> None:
        """Put ``module`` at qualified ``name``."""

    def graph(self, region: str) -> fx.GraphModule:
        """The GraphModule of traced part ``region``, marked as edited."""


class Decision(str, enum.Enum):
    """What happens to an entry (compares equal to its value: ``Decision.FLOAT == "float"``)."""

    BINARIZE = "binarize"  # compute layer -> binary layer
    FLOAT = "float"  # compute layer stays float
    MAXOUT = "maxout"  # activation -> Maxout
    KEEP = "keep"  # activation stays
    SHORTCUT = "shortcut"  # Bi-Real identity shortcut inserted
    LEFT_ALONE = "left alone"  # cannot be handled (never called, needs a graph, ...)

    def __str__(self) -> str:
        return self.value


class Handling(str, enum.Enum):
    """How a change is made: on a traced graph, by module replacement, or not at all."""

    GRAPH = "graph"
    MODULE = "module"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


@dataclass
class Entry:
    """One line of the plan; subclasses say what kind of thing it is and how to apply it."""

    kind_name: ClassVar[str] = ""

    name: str
    type_name: str
    decision: Decision
    rule: str
    reason: str
    handled_by: Handling = Handling.NONE
    macs: int = 0
    params: int = 0
    state_bytes: int = field(default=0, repr=False)  # bytes of the replaced module's state_dict
    region: str | None = field(default=None, repr=False)
    node: fx.Node | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.decision = Decision(self.decision)
        self.handled_by = Handling(self.handled_by)

    @property
    def kind(self) -> str:
        """``conv``, ``linear``, ``activation`` or ``shortcut``."""
        return self.kind_name

    @property
    def changes_model(self) -> bool:
        """Whether applying this entry changes the model."""
        return self.decision in (Decision.BINARIZE, Decision.MAXOUT, Decision.SHORTCUT)

    @property
    def label(self) -> str:
        """The decision as the report's table shows it."""
        return self.decision.value

    def apply(self, rewrite: Rewrite) -> None:
        """Make this entry's change on the model being rewritten (no-op by default)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "kind": self.kind,
            "decision": self.decision.value,
            "rule": self.rule,
            "reason": self.reason,
            "handled_by": self.handled_by.value,
            "macs": self.macs,
            "params": self.params,
        }


@dataclass
class LayerEntry(Entry):
    """A conv or linear layer: binarized (with ``method`` and ``options``) or kept float."""

    layer_kind: str = "conv"  # conv | linear
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    weight_numel: int = 0
    out_channels: int = 0
    bias_bytes: int = field(default=0, repr=False)

    @property
    def kind(self) -> str:
        return self.layer_kind

    @property
    def label(self) -> str:
        return f"{self.decision.value} ({self.method})" if self.method else self.decision.value

    def apply(self, rewrite: Rewrite) -> None:
        if self.decision != Decision.BINARIZE:
            return
        old = rewrite.get(self.name)
        plain, extra = as_plain_layer(old)  # timm's conv variants: same padding, standardization
        options = {**self.options, **extra}
        spec = method_spec(self.method)
        layer = spec.conv if isinstance(plain, nn.Conv2d) else spec.linear
        rewrite.replace(self.name, layer.from_float(plain, **options))

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.method is not None:
            d["method"] = self.method
            d["options"] = dict(self.options)
        return d


@dataclass
class ActivationEntry(Entry):
    """An activation (module, functional call, or one call site of a shared module)."""

    kind_name: ClassVar[str] = "activation"

    channels: int | None = None
    channel_dim: int | None = None
    call_site: bool = field(default=False, repr=False)  # one call of a shared module (graph)

    def _maxout(self, training: bool, device) -> Maxout:
        return Maxout(self.channels, channel_dim=self.channel_dim, device=device).train(training)

    def apply(self, rewrite: Rewrite) -> None:
        if self.decision != Decision.MAXOUT:
            return
        node = self.node
        if node is None or (node.op == "call_module" and not self.call_site):
            old = rewrite.get(self.name)
            rewrite.replace(self.name, self._maxout(old.training, rewrite.device))
            return
        gm = rewrite.graph(self.region)  # a functional call or one call site: a new module
        name = f"maxout_{node.name}"
        gm.add_submodule(name, self._maxout(gm.training, rewrite.device))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.channels is not None:
            d["channels"] = self.channels
        return d


@dataclass
class ShortcutEntry(Entry):
    """A Bi-Real identity shortcut around a binarized conv (and its norm)."""

    kind_name: ClassVar[str] = "shortcut"

    def apply(self, rewrite: Rewrite) -> None:
        if self.decision != Decision.SHORTCUT:
            return
        gm = rewrite.graph(self.region)
        conv_node = self.node
        tail = conv_node
        users = list(conv_node.users)
        if (
            len(users) == 1
            and users[0].op == "call_module"
            and isinstance(gm.get_submodule(users[0].target), NORM_TYPES)
        ):
            tail = users[0]
        with gm.graph.inserting_after(tail):
            add = gm.graph.call_function(operator.add, (tail, conv_node.args[0]))
        tail.replace_all_uses_with(add, delete_user_cb=lambda user: user is not add)


@dataclass
class Plan:
    """The annotated model: regions, every entry, and what is needed to rewrite it."""

    recipe: Recipe
    regions: list[Region]
    entries: list[Entry]
    float_params: int
    float_bytes: int  # the float model's state_dict
    kept_bytes: int  # the state the rewrite starts from (GraphModules drop unused modules)
    batch: int
    input_shape: tuple[int, ...] | None = None  # the example input without its batch dim
    example_inputs: tuple[Any, ...] = field(default=(), repr=False)


__all__ = [
    "ActivationEntry",
    "Decision",
    "Entry",
    "Handling",
    "LayerEntry",
    "Plan",
    "ShortcutEntry",
]
