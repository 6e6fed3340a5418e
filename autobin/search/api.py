"""``autobin.search``: measure which layers must stay float, choose them under a budget."""

from __future__ import annotations

import os
import time
from pathlib import Path

from torch import nn

from ..graph import explain
from ..graph.api import check_model
from ..recipes import Recipe, RecipeLike, as_recipe
from .budget import Budget, format_value, make_budget
from .calibration import CalibrationData
from .configurations import configuration_recipe, find_candidates
from .errors import SearchError
from .objective import objective_for
from .recipe_file import base_reference, layer_rules, recipe_text, searched_recipe, write_recipe
from .result import Point, SearchResult
from .selection import Selection, impossible_budget
from .sensitivity import Measurements, Measurer, Progress, ProgressLike, measure_layers

FRONT_POINTS = 200
"""Most points of the Pareto front kept in the result, its JSON and its plot."""


def search(
    model: nn.Module,
    data: CalibrationData,
    recipe: RecipeLike = "adabin",
    *,
    max_float_macs: float | None = None,
    max_ops: float | None = None,
    min_binary_share: float | None = None,
    max_size: float | None = None,
    calibration_size: int = 128,
    batch_size: int = 256,
    seed: int = 0,
    output: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    progress: ProgressLike = None,
) -> SearchResult:
    """Measure every layer's sensitivity to binarization and choose the float layers.

    Every conv/linear layer the base recipe decides by a rule is a candidate: those it
    binarizes and those it keeps float by policy (stem, classifier, shortcut/downsample,
    depthwise, linears). On ``calibration_size`` images of ``data``, the distillation loss of
    the binarized model against ``model`` is measured (after fitting the activation binary sets
    and re-estimating BatchNorm statistics, no training) with every candidate float, every
    candidate binary, and for each candidate with only it binary and with only it float. For a
    classifier the loss is the KL divergence of the predictions; for an MMDetection detector
    (``autobin.integrations.mmdet`` imported) the losses its binary student distills with
    (normalized feature MSE on the neck outputs, KL of the head's class scores) plus the same
    MSE on the box regressions. Their combination is each layer's importance; keeping a layer
    float costs what autobin's report says it adds to the budgeted total. The float layers are
    the set of highest total importance within the budget (a knapsack), checked against the
    exact report of the resulting recipe.

    Give exactly one budget:

    * ``max_float_macs``: float MACs of the whole model (report total ``flops``);
    * ``max_ops``: OPs = float MACs + BOPs / 64 (``ops``);
    * ``min_binary_share``: share of conv/linear MACs that is binary, 0..1
      (``binary_mac_share``);
    * ``max_size``: packed size in bytes (``packed_size_bytes``).

    Args:
        model: the trained float model (not binarized); it is not modified.
        data: calibration data: a dataset name (its train split), a Dataset of
            ``(image, label)`` pairs, a DataLoader or an ``(N, C, H, W)`` tensor. For a
            detector: a VOC-format root (e.g. ``autobin mmdet-data mnist-det-small PATH``; its
            trainval images), an mmdet dataset or DataLoader (its items are preprocessed by the
            detector's ``data_preprocessor``) or a tensor of preprocessed images.
        recipe: the base recipe (name, YAML path, mapping or Recipe); its method, options,
            activations and shortcuts are kept.
        calibration_size: images used (chosen by ``seed``).
        batch_size: images per forward pass.
        seed: picks the calibration images; the same seed gives the same result.
        output: write the searched recipe YAML here (atomically, checked by loading it back),
            and the report next to it.
        report_dir: folder for ``layers.txt``, ``search.json`` and ``pareto.png`` (default:
            ``OUTPUT`` without its suffix plus ``.search``); written only with ``output`` or
            ``report_dir``.
        name: the searched recipe's name (default ``<model>-<base>-search``).
        progress: a progress line on stderr (None: when stderr is a terminal), or a callable
            ``progress(done, total, what)``.

    Returns:
        A :class:`SearchResult` (``print(result)`` shows the summary and the per-layer table).

    Raises:
        SearchError: no budget or several, a budget no recipe can meet, an empty calibration
            set, a model with nothing to search.
    """
    start = time.monotonic()
    budget = make_budget(
        max_float_macs=max_float_macs,
        max_ops=max_ops,
        min_binary_share=min_binary_share,
        max_size=max_size,
    )
    check_model(model, "search")
    if output is not None and Path(output).is_dir():
        raise SearchError(f"output {output} is a directory; give a file name, e.g. my-recipe.yaml")
    base = as_recipe(recipe)
    objective = objective_for(model)
    was_training = model.training
    try:
        images = objective.images(model, data, calibration_size, seed)
        objective.outputs(model, images[:2], batch_size)  # what it compares? (or a clear error)
        report = explain(model, base, example_inputs=(images[:2],))
        candidates = find_candidates(report)
        _check_feasible(model, base, candidates, budget, images)
        measurer = Measurer(model, base, candidates, images, batch_size, objective)
        bar = Progress(4 + 2 * len(candidates), progress)
        measured = measure_layers(measurer, bar)
        result = _choose(measurer, measured, budget, report.model, name, bar)
    finally:
        model.train(was_training)
    result.calibration_images, result.seed = int(images.shape[0]), seed
    result.seconds = time.monotonic() - start
    if output is not None:
        output = Path(output)
        extends = base_reference(recipe, base, output)
        result.recipe_yaml = _text(result, base, extends)
        folder = Path(report_dir) if report_dir else output.with_name(output.stem + ".search")
        result.write_report(folder)
        result.recipe = write_recipe(output, result.recipe_yaml, result.recipe)
        result.output = output
    else:
        extends = base_reference(recipe, base, Path.cwd() / "searched.yaml")
        result.recipe_yaml = _text(result, base, extends)
        if report_dir is not None:
            result.write_report(report_dir)
    return result


def _check_feasible(model, base, candidates, budget: Budget, images) -> None:
    """Refuse, before measuring anything, a budget that not even all-binary meets."""
    everything = configuration_recipe(base, candidates, [c.name for c in candidates], "all")
    totals = explain(model, everything, example_inputs=(images[:2],)).totals
    if budget.slack(totals) < 0:
        raise impossible_budget(budget, budget.value(totals), len(candidates))


def _choose(
    measurer: Measurer,
    measured: Measurements,
    budget: Budget,
    model_name: str,
    name: str | None,
    bar: Progress,
) -> SearchResult:
    """The knapsack, the exact check against the report, the base and front points."""
    base = measurer.base
    selection = Selection(measured.layers, measured.all_binary.totals, budget)
    chosen = selection.choose()
    name = name or f"{model_name}-{base.name}-search"
    while True:  # the report of the real recipe decides; drop the weakest layer if it says no
        recipe = searched_recipe(
            base, measured.layers, chosen, budget, selection.costs, name, model_name
        )
        loss, totals = measurer.measure_recipe(recipe)
        bar.step("the searched recipe")
        if budget.met(totals):
            break
        weakest = selection.weakest(chosen)
        chosen = [n for n in chosen if n != weakest]
    base_float = [c.name for c in measurer.candidates if not c.base_binary]
    base_loss, base_totals = measurer.measure_recipe(base)
    bar.step(f"the base recipe {base.name!r}")
    knapsack_loss = None
    if keeps_base(budget, base_totals, base_loss, loss):
        knapsack_loss, chosen, loss, totals = loss, base_float, base_loss, base_totals
        recipe = searched_recipe(
            base, measured.layers, chosen, budget, selection.costs, name, model_name
        )

    def predicted(float_names: list[str]) -> float:
        gain = sum(selection.importance[n] for n in float_names)
        return max(measured.all_float.loss, measured.all_binary.loss - gain)

    def point(label: str, names: list[str], value: float, loss: float | None = None) -> Point:
        return Point(label, tuple(names), value, predicted(names), loss)

    front = [point("front", s, selection.value(s)) for s in selection.knapsack.front()]
    return SearchResult(
        model=model_name,
        loss_name=measurer.objective.loss_name,
        recipe=recipe,
        recipe_yaml="",
        budget=budget,
        float_layers=chosen,
        layers=measured.layers,
        costs=selection.costs,
        searched=point("searched", chosen, budget.value(totals), loss),
        base=point("base", base_float, budget.value(base_totals), base_loss),
        front=_pareto(front, budget),
        totals=totals,
        base_totals=base_totals,
        all_binary_totals=measured.all_binary.totals,
        all_float_loss=measured.all_float.loss,
        all_binary_loss=measured.all_binary.loss,
        base_recipe=base,
        knapsack_loss=knapsack_loss,
    )


def keeps_base(budget: Budget, base_totals: dict, base_loss: float, knapsack_loss: float) -> bool:
    """Whether the search answers with the base recipe's float layers instead of the knapsack's.

    The knapsack adds the layers' importances as if they did not interact, so its set is a
    prediction; both sets are then measured. Where the base recipe also meets the budget and
    measured a lower loss, the base recipe's float layers are the answer.
    """
    return budget.met(base_totals) and base_loss < knapsack_loss


def _pareto(points: list[Point], budget: Budget, most: int = FRONT_POINTS) -> list[Point]:
    """Points no other point beats in both value (budget side) and predicted loss, at most
    ``most`` of them (evenly spread, both ends kept), in ascending value."""
    better_value = (lambda p: -p.value) if budget.is_lower_bound else (lambda p: p.value)
    kept: list[Point] = []
    for p in sorted(points, key=lambda p: (better_value(p), p.predicted_loss)):
        if not kept or p.predicted_loss < kept[-1].predicted_loss:
            kept.append(p)
    if len(kept) > most:
        kept = [kept[round(i * (len(kept) - 1) / (most - 1))] for i in range(most)]
    return sorted(kept, key=lambda p: p.value)


def _text(result: SearchResult, base: Recipe, extends: str | None) -> str:
    rules = layer_rules(
        result.layers, result.float_layers, result.budget, result.costs, result.loss_name
    )
    s, b, loss = result.searched, result.base, result.loss_name
    header = [
        f"Written by autobin search for {result.model}: {len(result.layers)} candidate layers "
        f"measured on {result.calibration_images} calibration images (seed {result.seed}).",
        f"Budget {result.budget.describe(s.value)}; {len(result.float_layers)} layers stay float.",
        f"{loss} to the float model after calibration (no training): measured "
        f"{s.measured_loss:.4g}"
        f", predicted {s.predicted_loss:.4g}; base recipe {result.base_recipe.name!r}: measured "
        f"{b.measured_loss:.4g} at {format_value(result.budget.kind, b.value)}.",
        f"Each rule's comment: {loss} with only that layer binary / only it float, the importance "
        "the search combined from them, and its cost.",
    ]
    return recipe_text(result.recipe.name, result.recipe.description, header, rules, base, extends)


__all__ = ["keeps_base", "search"]
