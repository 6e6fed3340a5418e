"""Measuring each candidate layer: the distillation loss of configurations that differ in it.

For a float model, its calibration images and the base recipe, the search measures (after
:func:`~autobin.search.calibration.calibrate`) the distillation loss of each configuration
against the float model (its :class:`~autobin.search.objective.Objective`: for a classifier the
KL divergence of the softmax, T = 1; for a detector feature, class-score and box distillation
terms, see :mod:`autobin.integrations.mmdet.search`) on:

* ``all float``: every candidate float (the recipe's other changes, e.g. Maxout, remain);
* ``all binary``: every candidate binary;
* ``only L binary`` and ``only L float`` for each candidate ``L``.

From these, each layer's *damage* (``only L binary - all float``: what binarizing it costs in a
float network) and *gain* (``all binary - only L float``: what keeping it float saves in a
binary network). Both estimate the same quantity from the two ends, so each is scaled to
explain the whole gap ``all binary - all float`` and the layer's *importance* is their mean
(negative measurements, i.e. noise, count as 0). The predicted loss of a set ``F`` of float
layers is ``all binary - sum of importance over F`` (never below ``all float``).

The configurations are measured with the float model's own activations: the recipe's
activation replacement (Maxout, initialised to slopes ``(1, 0.25)``) is left out of the
measured models, since at its initialisation it changes a trained network as much as
binarization does (it is in every configuration, the all-float one included) and would bury
each layer's effect under its own; the student trains it from there. Bi-Real shortcuts, which
belong to the binary layers, stay. The report totals that the budgets read come from
``autobin.explain`` with the configuration's full recipe, so the cost of keeping a layer float
is read off autobin's own report, not recomputed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..graph import NothingBinarizedWarning, binarize, explain
from ..recipes import Recipe
from .calibration import calibrate
from .configurations import Candidate, configuration_recipe
from .objective import CLASSIFIER, Objective

ProgressLike = bool | None | Callable[[int, int, str], None]


@dataclass
class Configuration:
    """One measured configuration.

    Attributes:
        binary: names of the binary candidates.
        loss: distillation loss against the float model after calibration.
        totals: report totals of the configuration's recipe (empty where the search needs none).
    """

    binary: frozenset[str]
    loss: float
    totals: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LayerSensitivity:
    """What the search measured for one candidate.

    Attributes:
        candidate: the layer.
        only_binary: loss with only this layer binary.
        only_float: loss with only this layer float.
        damage: ``only_binary - all_float``.
        gain: ``all_binary - only_float``.
        importance: the combined, scaled estimate (see the module docstring).
        totals_float: report totals of the configuration where only this layer is float.
    """

    candidate: Candidate
    only_binary: float
    only_float: float
    damage: float
    gain: float
    importance: float
    totals_float: dict[str, Any] = field(repr=False, compare=False)


@dataclass
class Measurements:
    """Every measurement of one search."""

    all_float: Configuration
    all_binary: Configuration
    layers: list[LayerSensitivity]
    seconds: float


class Progress:
    """A one-line progress display on a terminal (stderr), or a callback, or nothing."""

    def __init__(self, total: int, progress: ProgressLike) -> None:
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.callback = progress if callable(progress) else None
        self.show = progress is True or (progress is None and sys.stderr.isatty())

    def step(self, what: str) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, what)
        if self.show:
            elapsed = time.monotonic() - self.start
            line = f"autobin search: [{self.done}/{self.total}] {what} ({elapsed:.0f} s)"
            sys.stderr.write("\r" + line[:100].ljust(100))
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class Measurer:
    """Binarizes, calibrates and scores configurations of one float model."""

    def __init__(
        self,
        model: nn.Module,
        base: Recipe,
        candidates: Sequence[Candidate],
        images: torch.Tensor,
        batch_size: int,
        objective: Objective = CLASSIFIER,
    ) -> None:
        self.model, self.base, self.candidates = model, base, list(candidates)
        self.images, self.batch_size, self.objective = images, batch_size, objective
        self.example = (images[:2],)
        self.reference = objective.outputs(model, images, batch_size)

    def recipe(self, binary: frozenset[str]) -> Recipe:
        return configuration_recipe(self.base, self.candidates, binary, f"{self.base.name}-search")

    def measure(self, binary: frozenset[str], totals: bool = False) -> Configuration:
        """Binarize with exactly the candidates in ``binary`` binary, calibrate, and score;
        with ``totals``, also read the report totals of the configuration's recipe."""
        recipe = self.recipe(binary)
        loss = self.loss(recipe)
        return Configuration(binary, loss, self.totals(recipe) if totals else {})

    def loss(self, recipe: Recipe) -> float:
        """The loss against the float model of ``recipe``'s binarization (own activations),
        calibrated."""
        measured = dataclasses.replace(
            recipe, activations=dataclasses.replace(recipe.activations, replace=())
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NothingBinarizedWarning)
            bnn = binarize(self.model, measured, example_inputs=self.example)
        calibrate(bnn, self.images, self.batch_size)
        out = self.objective.outputs(bnn, self.images, self.batch_size)
        return self.objective.loss(out, self.reference)

    def totals(self, recipe: Recipe) -> dict[str, Any]:
        """The report totals of ``recipe`` (what the budgets read)."""
        return dict(explain(self.model, recipe, example_inputs=self.example).totals)

    def measure_recipe(self, recipe: Recipe) -> tuple[float, dict[str, Any]]:
        """The loss and the report totals of any recipe."""
        return self.loss(recipe), self.totals(recipe)


def measure_layers(measurer: Measurer, bar: Progress) -> Measurements:
    """Measure the two end configurations and both single-layer configurations per layer
    (``2 + 2 * len(candidates)`` steps of ``bar``)."""
    start = time.monotonic()
    names = [c.name for c in measurer.candidates]
    everything = frozenset(names)
    all_float = measurer.measure(frozenset())
    bar.step("all candidates float")
    all_binary = measurer.measure(everything, totals=True)
    bar.step("all candidates binary")
    only_binary, only_float = {}, {}
    for name in names:
        only_binary[name] = measurer.measure(frozenset([name]))
        bar.step(f"only {name} binary")
        only_float[name] = measurer.measure(everything - {name}, totals=True)
        bar.step(f"only {name} float")
    damage = {n: only_binary[n].loss - all_float.loss for n in names}
    gain = {n: all_binary.loss - only_float[n].loss for n in names}
    importance = combine(damage, gain, all_binary.loss - all_float.loss)
    layers = [
        LayerSensitivity(
            c,
            only_binary[c.name].loss,
            only_float[c.name].loss,
            damage[c.name],
            gain[c.name],
            importance[c.name],
            only_float[c.name].totals,
        )
        for c in measurer.candidates
    ]
    return Measurements(all_float, all_binary, layers, time.monotonic() - start)


def combine(damage: dict[str, float], gain: dict[str, float], gap: float) -> dict[str, float]:
    """Importance per layer: the mean of damage and gain, each scaled to sum to ``gap``.

    Negative values (measurement noise) count as 0; an estimate that is 0 everywhere is left
    out of the mean.
    """
    gap = max(gap, 0.0)
    estimates = []
    for values in (damage, gain):
        clipped = {n: max(v, 0.0) for n, v in values.items()}
        total = sum(clipped.values())
        if total > 0:
            estimates.append({n: v * gap / total for n, v in clipped.items()})
    if not estimates:
        return {n: 0.0 for n in damage}
    return {n: sum(e[n] for e in estimates) / len(estimates) for n in damage}


__all__ = [
    "Configuration",
    "LayerSensitivity",
    "Measurements",
    "Measurer",
    "Progress",
    "ProgressLike",
    "combine",
    "measure_layers",
]
