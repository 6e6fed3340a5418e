"""Public entry points of the graph pass: :func:`binarize` and :func:`explain`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..recipes import Recipe, load_recipe
from .annotate import annotate
from .report import BinarizeReport
from .rewrite import rewrite

DEFAULT_RECIPE = "adabin"
FLOAT_MODEL_ATTR = "_autobin_float_model"


def _resolve_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        return load_recipe(recipe)
    raise TypeError(
        f"recipe must be a recipe name (see autobin.list_recipes()), a path to a YAML file or a "
        f"Recipe, got {type(recipe).__name__}"
    )


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    return arch or type(model).__name__


def explain(
    model: nn.Module,
    recipe: str | Recipe = DEFAULT_RECIPE,
    *,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
) -> BinarizeReport:
    """Dry run: what :func:`binarize` would do to ``model``, layer by layer, and why.

    The model is not modified. The report prints as a table (``print(report)``) and converts
    to plain data with ``report.to_dict()``; ``binarize`` attaches the same report.

    Args:
        model: a float PyTorch model, e.g. ``timm.create_model("resnet18")``.
        recipe: a built-in recipe name (``autobin.list_recipes()``), a YAML path or a Recipe.
        example_inputs: inputs for shape propagation; default: a random batch of the model's
            ``pretrained_cfg['input_size']``.
    """
    recipe = _resolve_recipe(recipe)
    plan = annotate(model, recipe, example_inputs)
    return BinarizeReport.from_plan(plan, _model_name(model))


def binarize(
    model: nn.Module,
    recipe: str | Recipe = DEFAULT_RECIPE,
    *,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Turn a float model into a binary neural network following ``recipe``.

    The model is traced with a timm-aware torch.fx tracer (untraceable parts are traced child
    by child, and modules inside leaves are replaced directly); convolutions (and linears, where
    the recipe says so) become binary layers initialised from the float weights, activations
    become Maxout, and Bi-Real shortcuts are inserted where the recipe asks for them.

    Args:
        model: a float model (not already binarized).
        recipe: a built-in recipe name, a YAML path or a Recipe (default ``"adabin"``).
        example_inputs: inputs for shape propagation (default from ``pretrained_cfg``).
        inplace: reuse and modify ``model``'s modules instead of working on a copy. Always use
            the returned module: a fully traced model comes back as a ``GraphModule``.

    Returns:
        The binary model, with the same call signature and output shape, and the same
        train/eval mode. ``result.autobin_report`` is the :class:`BinarizeReport`,
        ``result.autobin_recipe`` the recipe; the float model is kept as the default teacher
        for :func:`autobin.finetune`.

    Raises:
        ValueError: the model is already binarized, or has no input size and no
            ``example_inputs`` were given.
        RecipeError: the recipe is invalid.
    """
    recipe = _resolve_recipe(recipe)
    work = model if inplace else copy.deepcopy(model)
    teacher = copy.deepcopy(model) if inplace else model
    plan = annotate(work, recipe, example_inputs)
    report = BinarizeReport.from_plan(plan, _model_name(model))
    result = rewrite(plan, work)
    result.train(model.training) if inplace else None
    result.autobin_report = report
    result.autobin_recipe = recipe
    object.__setattr__(result, FLOAT_MODEL_ATTR, teacher)
    return result


def float_model_of(model: nn.Module) -> nn.Module | None:
    """The float model a binary model was made from (its default teacher), if known."""
    return getattr(model, FLOAT_MODEL_ATTR, None)
