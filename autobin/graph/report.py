"""The binarization report: what :func:`autobin.explain` returns and ``binarize`` attaches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..nn import method_spec
from .plan import Entry, Plan

FP32_BYTES = 4
BOPS_PER_OP = 64
"""BNN papers count ``OPs = BOPs / 64 + FLOPs`` (one 64-bit XNOR/popcount word per op)."""


@dataclass
class BinarizeReport:
    """Per-layer decisions and model totals of a binarization (dry run or applied).

    Attributes:
        model: the model's class name (and timm architecture when known).
        recipe: the recipe name.
        recipe_sha256: hash of the recipe's canonical form.
        entries: one per conv/linear layer, activation and Bi-Real shortcut.
        regions: how each part of the model was handled (traced or not, and why).
        totals: aggregate numbers, see :meth:`to_dict`.
    """

    model: str
    recipe: str
    recipe_sha256: str
    entries: list[Entry]
    regions: list[dict[str, str]]
    totals: dict[str, Any]
    input_shape: tuple[int, ...] | None = None

    @classmethod
    def from_plan(cls, plan: Plan, model_name: str) -> BinarizeReport:
        regions = [
            {
                "name": r.name or "<root>",
                "traced": r.graph_module is not None,
                "error": r.error,
            }
            for r in plan.regions
        ]
        return cls(
            model=model_name,
            recipe=plan.recipe.name,
            recipe_sha256=plan.recipe.sha256,
            entries=list(plan.entries),
            regions=regions,
            totals=_totals(plan),
            input_shape=plan.input_shape,
        )

    # ------------------------------------------------------------------ views
    def layers(self, decision: str | None = None, kind: str | None = None) -> list[Entry]:
        """Entries filtered by decision and/or kind."""
        return [
            e
            for e in self.entries
            if (decision is None or e.decision == decision) and (kind is None or e.kind == kind)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``model``, ``recipe``, ``recipe_sha256``, ``regions``, ``layers``,
        ``totals``.

        ``totals`` has ``conv_linear_macs``, ``binary_macs``, ``binary_mac_share``, ``bops``,
        ``flops``, ``ops`` (= bops/64 + flops), ``params``, ``binary_params``,
        ``float_size_bytes`` (float32 state dict), ``packed_size_bytes`` (binary weights as
        packed signs plus fp32 per-channel sets), ``size_ratio``, and counts of layers by
        decision and by how they were handled.
        """
        return {
            "model": self.model,
            "recipe": self.recipe,
            "recipe_sha256": self.recipe_sha256,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "regions": [dict(r) for r in self.regions],
            "layers": [e.to_dict() for e in self.entries],
            "totals": dict(self.totals),
        }

    def __str__(self) -> str:
        head = ("layer", "type", "decision", "rule", "via", "MACs", "params", "reason")
        rows = [
            (
                e.name,
                e.type_name,
                e.label,
                e.rule,
                e.handled_by.value,
                _si(e.macs) if e.macs else "",
                _si(e.params) if e.params else "",
                e.reason,
            )
            for e in self.entries
        ]
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
        widths = [min(w, 48) for w in widths]

        def fmt(row):
            cells = [str(c)[:w].ljust(w) for c, w in zip(row[:-1], widths)]
            return "  ".join(cells) + "  " + str(row[-1])

        t = self.totals
        lines = [f"autobin report: {self.model} with recipe {self.recipe!r}", fmt(head)]
        lines += [fmt(r) for r in rows]
        untraced = [r for r in self.regions if not r["traced"]]
        for r in untraced:
            lines.append(f"untraced: {r['name']}: {r['error']} (children handled separately)")
        lines += [
            "",
            f"binary layers: {t['binarized_layers']}  float layers: {t['float_layers']}  "
            f"maxout: {t['maxout']}  shortcuts: {t['shortcuts']}  left alone: {t['left_alone']}",
            f"binary share of conv/linear MACs: {100 * t['binary_mac_share']:.1f}%  "
            f"BOPs: {_si(t['bops'])}  FLOPs: {_si(t['flops'])}  OPs: {_si(t['ops'])}",
            f"size: float32 {_bytes(t['float_size_bytes'])} -> packed "
            f"{_bytes(t['packed_size_bytes'])} ({t['size_ratio']:.1f}x smaller)",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        t = self.totals
        return (
            f"BinarizeReport(model={self.model!r}, recipe={self.recipe!r}, "
            f"binary_layers={t['binarized_layers']}, "
            f"binary_mac_share={t['binary_mac_share']:.3f})"
        )


def _totals(plan: Plan) -> dict[str, Any]:
    compute = [e for e in plan.entries if e.kind in ("conv", "linear")]
    binary = [e for e in compute if e.decision == "binarize"]
    total_macs = sum(e.macs for e in compute)
    binary_macs = sum(e.macs for e in binary)
    flops = total_macs - binary_macs
    binary_params = sum(e.params for e in binary)
    maxouts = [e for e in plan.entries if e.decision == "maxout"]
    packed = _packed_bytes(plan.kept_bytes, binary, maxouts)
    handled = {}
    for e in plan.entries:
        if e.decision not in ("float", "keep"):
            handled[e.handled_by.value] = handled.get(e.handled_by.value, 0) + 1
    return {
        "conv_linear_macs": total_macs,
        "binary_macs": binary_macs,
        "binary_mac_share": binary_macs / total_macs if total_macs else 0.0,
        "bops": binary_macs,
        "flops": flops,
        "ops": binary_macs / BOPS_PER_OP + flops,
        "params": plan.float_params,
        "binary_params": binary_params,
        "float_size_bytes": plan.float_bytes,
        "packed_size_bytes": packed,
        "size_ratio": plan.float_bytes / packed if packed else 0.0,
        "binarized_layers": len(binary),
        "float_layers": sum(1 for e in compute if e.decision == "float"),
        "maxout": len(maxouts),
        "shortcuts": sum(1 for e in plan.entries if e.decision == "shortcut"),
        "left_alone": sum(1 for e in plan.entries if e.decision == "left alone"),
        "handled_by": handled,
        "traced_regions": sum(1 for r in plan.regions if r.graph_module is not None),
        "untraced_regions": sum(1 for r in plan.regions if r.graph_module is None),
    }


def _packed_bytes(kept_bytes: int, binary: list[Entry], maxouts: list[Entry]) -> int:
    """Bytes of the binarized model's state_dict with binary weights stored as packed signs.

    Starts from the state the rewrite keeps and swaps each replaced module's state for its
    replacement's: a binary layer saves its weight signs (``ceil(n / 8)`` bytes), fp32
    ``alpha_w`` and ``beta_w`` per output channel, its bias as it was and its method's fp32
    learned scalars (AdaBin: ``act_alpha``/``act_beta``); a Maxout saves fp32
    ``gamma_pos``/``gamma_neg`` per channel.
    """
    packed = kept_bytes
    for e in binary:
        packed += e.bias_bytes - e.state_bytes
        packed += math.ceil(e.weight_numel / 8) + 2 * FP32_BYTES * e.out_channels
        packed += FP32_BYTES * len(method_spec(e.method).scalar_params)
    for e in maxouts:
        packed += 2 * FP32_BYTES * (e.channels or 0) - e.state_bytes
    return packed


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}" if isinstance(n, float) else str(n)


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
