"""The plan: what annotate decided for every layer, activation and shortcut of a model.

:func:`~autobin.graph.annotate.annotate` makes a :class:`Plan`; the rewrite applies it and the
report summarises it, so :func:`autobin.explain` and :func:`autobin.binarize` always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import fx

from ..recipes import Recipe
from .tracer import Region


@dataclass
class Entry:
    """One line of the plan: a layer, an activation or a shortcut, and what happens to it.

    ``decision`` is one of ``binarize``, ``float`` (compute layers), ``maxout``, ``keep``
    (activations), ``shortcut`` (Bi-Real shortcut), ``left alone`` (cannot be handled).
    ``handled_by`` is ``graph`` (rewritten in a traced fx graph), ``module`` (module
    replacement: inside a leaf module or an untraced part) or ``none``.
    """

    name: str
    type_name: str
    kind: str
    decision: str
    rule: str
    reason: str
    handled_by: str
    macs: int = 0
    params: int = 0
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    weight_numel: int = 0
    out_channels: int = 0
    channels: int | None = None
    channel_dim: int | None = None
    call_site: bool = field(default=False, repr=False)  # one call of a shared module (graph)
    state_bytes: int = field(default=0, repr=False)  # bytes of the replaced module's state_dict
    bias_bytes: int = field(default=0, repr=False)
    region: str | None = field(default=None, repr=False)
    node: fx.Node | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "type": self.type_name,
            "kind": self.kind,
            "decision": self.decision,
            "rule": self.rule,
            "reason": self.reason,
            "handled_by": self.handled_by,
            "macs": self.macs,
            "params": self.params,
        }
        if self.method is not None:
            d["method"] = self.method
            d["options"] = dict(self.options)
        if self.channels is not None:
            d["channels"] = self.channels
        return d


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
