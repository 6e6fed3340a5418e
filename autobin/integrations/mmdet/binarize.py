"""Binarize an mmdet detector with autobin's one graph pass, leaving mmdet's code untouched.

:func:`binarize_detector` is :func:`autobin.binarize` on a detector (the mmdet family adapter,
:mod:`.family`, says what to trace, what the prediction layers are and how rewritten parts are
installed) with a detector's example input size and a clear error when the recipe binarizes
nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ...graph import BinarizeReport, NothingBinarizedWarning, binarize, explain
from ...model_info import info
from ...recipes import Recipe
from .build import check_detector
from .errors import RecipeMatchError
from .family import MMDetFamily, default_input_size, prediction_convs

_FAMILY = MMDetFamily()


def example_inputs(
    detector: nn.Module, input_size: Sequence[int] | None = None
) -> tuple[torch.Tensor, list]:
    """A seeded random normalized image batch ``(1, 3, H, W)`` on the detector's device and its
    data samples (image metas, which two-stage and DETR-style detectors read in ``mode='tensor'``).
    """
    size = tuple(input_size) if input_size is not None else default_input_size(detector)
    return _FAMILY.example_inputs(detector, (3, *size))


def explain_detector(
    detector: nn.Module,
    recipe: str | Recipe = "det-adabin",
    *,
    input_size: Sequence[int] | None = None,
) -> BinarizeReport:
    """Dry run of :func:`binarize_detector`: every layer of the detector, its decision and why.

    Args:
        detector: a float mmdet detector (e.g. built from ``ssd300_voc0712.py``).
        recipe: a recipe name (``ssd300-adabin``, ``det-adabin``, ...), YAML path or Recipe.
        input_size: ``(H, W)`` of the example image (default: SSD's anchor input size, else 300).
    """
    check_detector(detector)
    return explain(detector, recipe, example_inputs=example_inputs(detector, input_size))


def binarize_detector(
    detector: nn.Module,
    recipe: str | Recipe = "det-adabin",
    *,
    input_size: Sequence[int] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Binarize the backbone, neck and head of an mmdet detector following ``recipe``.

    The detector keeps its class and its parts keep theirs (mmdet's loss and predict code run
    unchanged); binarized convs become :class:`autobin.nn.BinaryConv2d` subclasses initialised
    from the float weights, activations become :class:`autobin.nn.Maxout`, and Bi-Real
    shortcuts are inserted in the traced parts where the recipe asks for them.

    Args:
        detector: a float mmdet detector.
        recipe: recipe name, YAML path or Recipe (default ``det-adabin``).
        input_size: ``(H, W)`` of the example image for the eager pass.
        inplace: modify ``detector`` itself instead of a copy.

    Returns:
        The binarized detector (:func:`autobin.info` gives its report and recipe), in the
        train/eval mode it came in.

    Raises:
        DetectorConfigError: not an mmdet detector.
        RecipeMatchError: the recipe binarizes no layer of this detector.
        RecipeError: the recipe is invalid.
    """
    check_detector(detector)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NothingBinarizedWarning)  # an error here, below
        result = binarize(detector, recipe, inplace=inplace,
                          example_inputs=example_inputs(detector, input_size))  # fmt: skip
    record = info(result)
    if record.report.totals["binarized_layers"] == 0:
        raise RecipeMatchError(
            f"recipe {record.recipe.name!r} ({record.recipe.source or 'built-in'}) binarizes no "
            f"layer of {type(detector).__name__}: none of its rules matched a conv that is not "
            f"first/last. Check it with `autobin explain CONFIG --recipe {record.recipe.name}` "
            "and use a recipe whose `match` names this detector's modules, or det-adabin"
        )
    return result


__all__ = ["binarize_detector", "example_inputs", "explain_detector", "prediction_convs"]
