"""Public entry points of the graph pass: :func:`binarize` and :func:`explain`."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import AutobinWarning, BinarizeError, ModelTypeError
from ..model_info import FloatReference, ModelInfo, attach_info, float_model_of
from ..recipes import Recipe, RecipeLike, as_recipe
from .annotate import annotate
from .families import ModelFamily, family_of
from .report import BinarizeReport
from .rewrite import rewrite
from .run_check import check_runs

DEFAULT_RECIPE = "adabin"


class NothingBinarizedWarning(AutobinWarning):
    """``binarize`` found no layer to binarize: the result computes exactly what the input did."""


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
            like the model's input (its family's
            :meth:`~autobin.graph.families.ModelFamily.example_inputs`).
    """
    check_model(model, "explain")
    family = family_of(model)
    family.check(model)
    recipe = as_recipe(recipe)
    plan = annotate(model, recipe, example_inputs, family)
    return BinarizeReport.from_plan(plan, family.architecture_name(model))


def binarize(
    model: nn.Module,
    recipe: RecipeLike = DEFAULT_RECIPE,
    *,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Turn a float model into a binary neural network following ``recipe``.

    The model's family (timm, torchvision, mmdet when ``autobin.integrations.mmdet`` is
    imported, or any other ``nn.Module``; see :mod:`autobin.graph.families`) says what to trace,
    which layers are the stem and the prediction layers, and what example input to run. The
    model is traced with torch.fx (untraceable parts are traced child by child, and modules
    inside leaves are replaced directly); convolutions (and linears, where the recipe says so)
    become binary layers initialised from the float weights, activations become Maxout, and
    Bi-Real shortcuts are inserted where the recipe asks for them. The result is run once on
    the example input before it is returned.

    Args:
        model: a float model (not already binarized, not TorchScript).
        recipe: a built-in recipe name, a YAML path (``str`` or ``os.PathLike``), a mapping
            with a recipe's content, or a Recipe (default ``"adabin"``).
        example_inputs: inputs for shape propagation. Default: a seeded random batch with the
            model's own input shape, as its family reads it (channels from the first conv or
            timm's ``in_chans``, size from a patch embedding or timm's ``pretrained_cfg``).
        inplace: reuse and modify ``model``'s modules instead of working on a copy. Always use
            the returned module: a fully traced model comes back as a ``GraphModule``.

    Returns:
        The binary model, with the same call signature and output shape, and the same
        train/eval mode. :func:`autobin.info` gives what autobin knows about it (family,
        architecture, recipe, :class:`BinarizeReport`, float model). The float model is the
        default teacher of :func:`autobin.finetune` (:func:`float_model_of`); it is a
        reference, not part of the model's state: ``torch.save(result)`` does not store it and
        ``copy.deepcopy(result)`` shares it.

    Raises:
        ModelTypeError: ``model`` is not a module.
        BinarizeError: the model is TorchScript or already binarized, the example forward
            pass fails (pass ``example_inputs``), or the rewritten model cannot run (the error
            names the layer or graph node).
        RecipeError: the recipe is unknown or invalid.

    Warns:
        NothingBinarizedWarning: the recipe binarizes no layer of this model.
    """
    check_model(model)
    family = family_of(model)
    family.check(model)
    recipe = as_recipe(recipe)
    work = model if inplace else copy.deepcopy(model)
    teacher = copy.deepcopy(model) if inplace else model
    plan = annotate(work, recipe, example_inputs, family)
    report = BinarizeReport.from_plan(plan, family.architecture_name(model))
    if not report.totals["binarized_layers"]:
        warnings.warn(
            f"recipe {recipe.name!r} binarizes no layer of {report.model}: the result is the "
            "float model (see autobin.explain(model, recipe) for each layer's rule and reason; "
            "adabin-full also binarizes linears)",
            NothingBinarizedWarning,
            stacklevel=2,
        )
    result = rewrite(plan, work, family)
    result.train(model.training) if inplace else None
    check_runs(result, plan.example_inputs)
    record = ModelInfo(family.name, family.zoo_architecture(teacher, plan.input_shape), recipe,
                       report, FloatReference(teacher))  # fmt: skip
    attach_info(result, record)
    return result


__all__ = [
    "DEFAULT_RECIPE",
    "ModelFamily",
    "NothingBinarizedWarning",
    "Recipe",
    "binarize",
    "check_model",
    "explain",
    "float_model_of",
]
