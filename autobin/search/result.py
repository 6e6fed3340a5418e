"""What a search returns: the recipe, every measurement, the Pareto front, and its report files.

``SearchResult.write_report(folder)`` writes ``layers.txt`` (the per-layer table),
``search.json`` (everything as plain data) and ``pareto.png`` (predicted loss vs budget, the
base recipe and the searched recipe marked), each atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write, write_json
from ..recipes import Recipe
from .budget import Budget, format_value, make_budget
from .recipe_file import searched_recipe
from .selection import Selection
from .sensitivity import LayerSensitivity


@dataclass(frozen=True)
class Point:
    """A set of float layers with its predicted loss and budget value.

    Attributes:
        label: what it is (``searched``, ``base``, ``front``).
        float_layers: the candidates that stay float.
        value: the budgeted total (e.g. float MACs) of this set.
        predicted_loss: predicted loss against the float model after calibration.
        measured_loss: measured loss (None where not measured).
    """

    label: str
    float_layers: tuple[str, ...]
    value: float
    predicted_loss: float
    measured_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "float_layers": list(self.float_layers),
            "value": self.value,
            "predicted_loss": self.predicted_loss,
            "measured_loss": self.measured_loss,
        }


@dataclass
class SearchResult:
    """The outcome of :func:`autobin.search`.

    Attributes:
        model: the model's name (as the report gives it).
        recipe: the searched recipe (loaded back from ``output`` when one was written).
        recipe_yaml: the recipe file's text.
        budget: the budget it was searched for.
        float_layers: the candidates the searched recipe keeps float, in model order.
        layers: per candidate, what was measured.
        costs: per candidate, the budget units keeping it float costs.
        searched: the searched recipe's point (measured as well as predicted).
        base: the base recipe's point.
        front: the Pareto front of predicted loss vs budget value.
        totals: the searched recipe's report totals (exact, from ``autobin.explain``).
        base_totals: the base recipe's report totals.
        all_float_loss: measured loss with every candidate float.
        all_binary_loss: measured loss with every candidate binary.
        calibration_images: how many images were used.
        seed: the seed that picked them.
        seconds: wall time of the search.
        output: the written recipe file, if any.
        report_dir: the folder of the report files, if written.
        all_binary_totals: report totals with every candidate binary.
        base_recipe: the base recipe.
        loss_name: what the losses are (``KL`` for a classifier, see
            :class:`~autobin.search.objective.Objective`).
        knapsack_loss: None, or the measured loss of the knapsack's set where it measured worse
            than the base recipe, which met the budget and whose float layers were kept.
    """

    model: str
    recipe: Recipe
    recipe_yaml: str
    budget: Budget
    float_layers: list[str]
    layers: list[LayerSensitivity]
    costs: dict[str, float]
    searched: Point
    base: Point
    front: list[Point]
    totals: dict[str, Any] = field(repr=False)
    base_totals: dict[str, Any] = field(repr=False)
    all_float_loss: float = 0.0
    all_binary_loss: float = 0.0
    calibration_images: int = 0
    seed: int = 0
    seconds: float = 0.0
    output: Path | None = None
    report_dir: Path | None = None
    all_binary_totals: dict[str, Any] = field(default_factory=dict, repr=False)
    base_recipe: Recipe | None = None
    loss_name: str = "KL"
    knapsack_loss: float | None = None

    def table(self) -> str:
        """The per-layer table: base and searched decision, MACs, cost, measurements."""
        chosen = set(self.float_layers)
        head = (
            "layer",
            "type",
            "base",
            "searched",
            "MACs",
            "float cost",
            f"{self.loss_name} 1-bin",
            f"{self.loss_name} 1-flt",
            "damage",
            "gain",
            "importance",
        )
        rows = [head]
        for s in self.layers:
            c = s.candidate
            rows.append(
                (
                    c.name,
                    c.type_name,
                    ("binary" if c.base_binary else "float") + f" ({c.base_rule})",
                    "float" if c.name in chosen else "binary",
                    f"{c.macs:,}",
                    format_value(self.budget.kind, self.costs[c.name]),
                    f"{s.only_binary:.4f}",
                    f"{s.only_float:.4f}",
                    f"{s.damage:+.4f}",
                    f"{s.gain:+.4f}",
                    f"{s.importance:.4f}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: budget reached, float layers, predicted and measured losses."""
        kind = self.budget.kind
        return "\n".join(
            [
                f"autobin search: {self.model}, base recipe {self.base_recipe.name!r}, "
                f"{len(self.layers)} candidate layers, {self.calibration_images} calibration "
                f"images (seed {self.seed}), {self.seconds:.0f} s",
                f"budget {self.budget.describe(self.searched.value)}; base recipe: "
                f"{format_value(kind, self.base.value)}",
                f"float layers ({len(self.float_layers)}): {', '.join(self.float_layers) or '-'}",
                f"{self.loss_name} to the float model after calibration: searched "
                f"{self.searched.measured_loss:.4f} (predicted "
                f"{self.searched.predicted_loss:.4f}), base recipe "
                f"{self.base.measured_loss:.4f} (predicted {self.base.predicted_loss:.4f}); "
                f"all float {self.all_float_loss:.4f}, all binary {self.all_binary_loss:.4f}",
                f"binary share of MACs {100 * self.totals['binary_mac_share']:.2f}% (base "
                f"{100 * self.base_totals['binary_mac_share']:.2f}%), float MACs "
                f"{self.totals['flops']:,} (base {self.base_totals['flops']:,}), packed "
                f"{self.totals['packed_size_bytes']:,} bytes",
            ]
            + (
                []
                if self.knapsack_loss is None
                else [
                    f"the knapsack's choice measured {self.knapsack_loss:.4f}, worse than the "
                    "base recipe, which meets the budget: the base recipe's float layers are kept"
                ]
            )
        )

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data (what ``search.json`` holds)."""
        return {
            "model": self.model,
            "base_recipe": self.base_recipe.name,
            "recipe": self.recipe.to_dict(),
            "budget": {
                "kind": self.budget.kind,
                "limit": self.budget.limit,
                "reached": self.searched.value,
            },
            "float_layers": list(self.float_layers),
            "calibration_images": self.calibration_images,
            "seed": self.seed,
            "seconds": self.seconds,
            "loss": self.loss_name,
            "all_float_loss": self.all_float_loss,
            "all_binary_loss": self.all_binary_loss,
            "knapsack_loss": self.knapsack_loss,
            "searched": self.searched.to_dict(),
            "base": self.base.to_dict(),
            "front": [p.to_dict() for p in self.front],
            "totals": dict(self.totals),
            "base_totals": dict(self.base_totals),
            "layers": [
                {
                    "name": s.candidate.name,
                    "type": s.candidate.type_name,
                    "kind": s.candidate.kind,
                    "macs": s.candidate.macs,
                    "base_decision": "binarize" if s.candidate.base_binary else "float",
                    "base_rule": s.candidate.base_rule,
                    "searched_decision": "float"
                    if s.candidate.name in self.float_layers
                    else "binarize",
                    "cost": self.costs[s.candidate.name],
                    "only_binary_loss": s.only_binary,
                    "only_float_loss": s.only_float,
                    "damage": s.damage,
                    "gain": s.gain,
                    "importance": s.importance,
                }
                for s in self.layers
            ],
        }

    def recipe_for(
        self,
        *,
        max_float_macs: float | None = None,
        max_ops: float | None = None,
        min_binary_share: float | None = None,
        max_size: float | None = None,
    ) -> Recipe:
        """The recipe this search's measurements choose under another budget, without
        measuring again. The budget holds on the additive cost model of the search, which is
        exact for MACs, OPs and the binary share (check a size budget with autobin.explain).

        Raises:
            SearchError: no budget, several, or one that cannot be met.
        """
        budget = make_budget(
            max_float_macs=max_float_macs,
            max_ops=max_ops,
            min_binary_share=min_binary_share,
            max_size=max_size,
        )
        selection = Selection(self.layers, self.all_binary_totals, budget)
        return searched_recipe(
            self.base_recipe,
            self.layers,
            selection.choose(),
            budget,
            selection.costs,
            f"{self.recipe.name}-{budget.kind}",
            self.model,
        )

    def write_report(self, folder: str | Path) -> Path:
        """Write ``layers.txt``, ``search.json`` and ``pareto.png`` into ``folder``."""
        folder = Path(folder)
        text = str(self) + "\n"
        atomic_write(folder / "layers.txt", lambda fh: fh.write(text.encode("utf-8")))
        write_json(folder / "search.json", self.to_dict())
        plot_front(self, folder / "pareto.png")
        self.report_dir = folder
        return folder


def plot_front(result: SearchResult, path: Path) -> Path:
    """Predicted loss vs budget value: the front, the base recipe and the searched recipe."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    budget = result.budget
    scale = 100.0 if budget.kind == "min_binary_share" else 1.0
    xs = [p.value * scale for p in result.front]
    ys = [p.predicted_loss for p in result.front]
    ax.plot(xs, ys, "-o", ms=3, color="tab:blue", label="Pareto front (predicted)")
    for point, color, marker in (
        (result.base, "tab:red", "s"),
        (result.searched, "tab:green", "*"),
    ):
        name = (
            f"base recipe ({result.base_recipe.name})"
            if point is result.base
            else "searched recipe"
        )
        ax.plot(
            [point.value * scale],
            [point.predicted_loss],
            marker,
            color=color,
            ms=10,
            label=f"{name}, predicted",
        )
        if point.measured_loss is not None:
            ax.plot(
                [point.value * scale],
                [point.measured_loss],
                marker,
                mfc="none",
                color=color,
                ms=10,
                label=f"{name}, measured",
            )
    ax.axvline(budget.limit * scale, color="gray", ls=":", label=f"budget {budget.describe()}")
    unit = {
        "max_float_macs": "float MACs",
        "max_ops": "OPs (float MACs + BOPs/64)",
        "min_binary_share": "binary share of conv/linear MACs (%)",
        "max_size": "packed size (bytes)",
    }[budget.kind]
    ax.set_xlabel(unit)
    ax.set_ylabel(f"{result.loss_name} to the float model (calibrated)")
    ax.set_title(f"autobin search: {result.model} ({len(result.layers)} candidate layers)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


__all__ = ["Point", "SearchResult", "plot_front"]
