"""Public entry points of the graph pass: :func:`binarize` and :func:`explain`."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import AutobinWarning, BinarizeError, ModelTypeError
from ..float_reference import attach_float_model, float_model_of, keep_attribute
from ..recipes import Recipe, RecipeLike, as_recipe
from .annotate import annotate
from .report import BinarizeReport
from .rewrite import rewrite

DEFAULT_RECIPE = "adabin"


class NothingBinarizedWarning(AutobinWarning):
    """``binarize`` found no layer to binarize: the result computes exactly what the input did."""


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    return arch or type(model).__name__


def check_model(model: Any, what: str = "binarize") -> None:
    """Refuse arguments the graph pass cannot work on, saying what to pass instead.

    Raises:
        ModelTypeError: ``model`` is not an ``nn.Module``.
        BinarizeError: ``model`` is a TorchScript module (its Python layers are gone).
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise BinarizeError(
            f"{what} got a TorchScript module ({type(model).__name__}): scripted or traced "
            "modules have no Python layers to replace; binarize the Python model, then script "
            "the result if you need TorchScript"
        )
    if not isinstance(model, nn.Module):
        raise ModelTypeError(
            f"{what} takes a torch.nn.Module (e.g. timm.create_model('resnet18')), got "
            f"{type(model).__name__}"
        )


def explain(
    model: nn.Module,
    recipe: RecipeLike = DEFAULT_RECIPE,
    *,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
) -> BinarizeReport:
    """Dry run: what :func:`binarize` would do to ``model``, layer by layer, and why.

    The model is not modified. The report prints as a table (``print(report)``) and converts
    to plain data with ``report.to_dict()``; ``binarize`` attaches the same report.

    Args:
        model: a float PyTorch model, e.g. ``timm.create_model("resnet18")``.
        recipe: a built-in recipe name (``autobin.list_recipes()``), a YAML path (``str`` or
            ``os.PathLike``), a mapping with a recipe's content, or a Recipe.
        example_inputs: inputs for shape propagation; default: a seeded random batch shaped
            like the model's input (see
            :func:`autobin.graph.example_inputs.default_example_inputs`).
    """
    check_model(model, "explain")
    recipe = as_recipe(recipe)
    plan = annotate(model, recipe, example_inputs)
    return BinarizeReport.from_plan(plan, _model_name(model))


def binarize(
    model: nn.Module,
    recipe: RecipeLike = DEFAULT_RECIPE,
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
        model: a float model (not already binarized, not TorchScript).
        recipe: a built-in recipe name, a YAML path (``str`` or ``os.PathLike``), a mapping
            with a recipe's content, or a Recipe (default ``"adabin"``).
        example_inputs: inputs for shape propagation. Default: a seeded random batch with the
            model's own input shape: channels from its first conv (or patch embedding), size
            from its patch embedding's fixed image size or timm's ``pretrained_cfg``.
        inplace: reuse and modify ``model``'s modules instead of working on a copy. Always use
            the returned module: a fully traced model comes back as a ``GraphModule``.

    Returns:
        The binary model, with the same call signature and output shape, and the same
        train/eval mode. ``result.autobin_report`` is the :class:`BinarizeReport`,
        ``result.autobin_recipe`` the recipe. The float model is attached as the default
        teacher of :func:`autobin.finetune` (:func:`float_model_of`); it is a reference, not
        part of the model's state: ``torch.save(result)`` does not store it and
        ``copy.deepcopy(result)`` shares it.

    Raises:
        ModelTypeError: ``model`` is not a module.
        BinarizeError: the model is TorchScript or already binarized, or the example forward
            pass fails (pass ``example_inputs``).
        RecipeError: the recipe is unknown or invalid.

    Warns:
        NothingBinarizedWarning: the recipe binarizes no layer of this model.
    """
    check_model(model)
    recipe = as_recipe(recipe)
    work = model if inplace else copy.deepcopy(model)
    teacher = copy.deepcopy(model) if inplace else model
    plan = annotate(work, recipe, example_inputs)
    report = BinarizeReport.from_plan(plan, _model_name(model))
    if not report.totals["binarized_layers"]:
        warnings.warn(
            f"recipe {recipe.name!r} binarizes no layer of {report.model}: the result is the "
            "float model (see autobin.explain(model, recipe) for each layer's rule and reason; "
            "adabin-full also binarizes linears)",
            NothingBinarizedWarning,
            stacklevel=2,
        )
    result = rewrite(plan, work)
    result.train(model.training) if inplace else None
    keep_attribute(result, "autobin_report", report)
    keep_attribute(result, "autobin_recipe", recipe)
    attach_float_model(result, teacher)
    return result


__all__ = [
    "DEFAULT_RECIPE",
    "NothingBinarizedWarning",
    "Recipe",
    "binarize",
    "check_model",
    "explain",
    "float_model_of",
]
