"""Binarize an mmdet detector with autobin's recipe engine, leaving mmdet's code untouched.

The detector's own ``forward`` branches on its ``mode`` argument, so it never traces as a
whole: the graph pass traces its parts (backbone, neck, head) separately and, where a part
cannot be traced (SSD's neck and head loop over their inputs), its children one by one, with
module-level replacement below that. The eager pass runs the detector in ``mode='tensor'`` on
an example image.

Two layer flags that a recipe matches on are detector-specific:

* ``first``: the first conv to run on the image (the backbone's stem);
* ``last``: every conv whose output the detector returns as a raw prediction (the head's final
  classification and box-regression convs), found by running the detector once.

A traced part comes back from the graph pass as a ``torch.fx.GraphModule``; mmdet calls
methods of its parts (``bbox_head.loss``, ``backbone.train`` with frozen stages, ...), so the
graph's code is moved back into the original module instead: every part keeps its mmdet class
and only its ``forward`` runs the rewritten graph.
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections.abc import Iterator, Sequence

import torch
from torch import fx, nn

from ...graph import BinarizeReport
from ...graph.annotate import Plan, annotate
from ...graph.rewrite import rewrite
from ...recipes import Recipe, load_recipe
from .errors import DetectorConfigError, RecipeMatchError

DEFAULT_INPUT_SIZE = (300, 300)
SKIPPED_PARTS = ("data_preprocessor",)  # runs outside forward(); no layers to binarize


def _resolve_recipe(recipe: str | Recipe) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def check_detector(detector: nn.Module) -> None:
    """Raise :class:`DetectorConfigError` unless ``detector`` looks like an mmdet detector."""
    if not (hasattr(detector, "extract_feat") and hasattr(detector, "backbone")):
        raise DetectorConfigError(
            f"{type(detector).__name__} is not an mmdet detector (it has no backbone / "
            "extract_feat); pass a model built from an mmdet detector config such as "
            "mmdet::pascal_voc/ssd300_voc0712.py"
        )


def default_input_size(detector: nn.Module) -> tuple[int, int]:
    """``(H, W)`` of the example image: the anchor generator's ``input_size`` (SSD), else 300."""
    head = getattr(detector, "bbox_head", None)
    size = getattr(getattr(head, "prior_generator", None), "input_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    return DEFAULT_INPUT_SIZE


def example_batch(detector: nn.Module, input_size: Sequence[int] | None = None) -> torch.Tensor:
    """A seeded random normalized image batch ``(1, 3, H, W)`` on the detector's device."""
    h, w = tuple(input_size) if input_size is not None else default_input_size(detector)
    param = next(detector.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    return torch.randn((1, 3, h, w), generator=gen).to(device)


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def prediction_convs(detector: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Names of the convs whose outputs the detector returns as raw predictions.

    Runs ``detector(inputs)`` (``mode='tensor'``) once in eval mode without gradients; a conv is
    a prediction conv when one of the returned tensors is its output object itself.
    """
    outputs: dict[int, str] = {}
    handles = []

    def hook(name):
        def record(_module, _args, output):
            if isinstance(output, torch.Tensor):
                outputs[id(output)] = name

        return record

    for name, module in detector.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(hook(name)))
    modes = {m: m.training for m in detector.modules()}
    detector.eval()
    try:
        with torch.no_grad():
            result = detector(inputs)
        names = [outputs[id(t)] for t in _tensors(result) if id(t) in outputs]
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def _declared_prediction_layers(detector: nn.Module, names: list[str]):
    """Declare ``names`` as the model's classifier the way timm does (``pretrained_cfg``).

    The graph pass marks a model's declared classifier layers ``last``; for a detector those are
    its prediction convs. The attribute exists only while the pass runs.
    """
    had = "pretrained_cfg" in detector.__dict__
    old = detector.__dict__.get("pretrained_cfg")
    detector.__dict__["pretrained_cfg"] = {"classifier": list(names)}
    try:
        yield
    finally:
        if had:
            detector.__dict__["pretrained_cfg"] = old
        else:
            del detector.__dict__["pretrained_cfg"]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _rehome(root: nn.Module, plan: Plan) -> None:
    """Move each traced part's rewritten graph back into the part's own (mmdet) module."""
    for region in plan.regions:
        gm = region.graph_module
        if gm is None or region.name == "":
            continue
        original = region.module
        for key, child in gm._modules.items():  # replaced layers and new Maxout call sites
            if original._modules.get(key) is not child:
                original._modules[key] = child
        for key, buffer in gm._buffers.items():  # tensors fx captured while tracing
            if key not in original._buffers:
                original.register_buffer(key, buffer, persistent=False)
        original.forward = types.MethodType(type(gm).forward, original)
        original.__dict__["_autobin_graph"] = gm.graph
        _set_module(root, region.name, original)


def _plan(detector: nn.Module, recipe: Recipe, inputs: torch.Tensor) -> Plan:
    check_detector(detector)
    with _declared_prediction_layers(detector, prediction_convs(detector, inputs)):
        return annotate(detector, recipe, (inputs,))


def _report(plan: Plan, detector: nn.Module) -> BinarizeReport:
    report = BinarizeReport.from_plan(plan, type(detector).__name__)
    report.regions = [
        r
        for r in report.regions
        if r["name"] != "<root>" and r["name"].split(".")[0] not in SKIPPED_PARTS
    ]
    report.totals["untraced_regions"] = sum(1 for r in report.regions if not r["traced"])
    return report


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
    recipe = _resolve_recipe(recipe)
    return _report(_plan(detector, recipe, example_batch(detector, input_size)), detector)


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
        The binarized detector, with ``autobin_report`` (:class:`~autobin.BinarizeReport`) and
        ``autobin_recipe`` attributes, in the train/eval mode it came in.

    Raises:
        DetectorConfigError: not an mmdet detector.
        RecipeMatchError: the recipe binarizes no layer of this detector.
        RecipeError: the recipe is invalid.
    """
    recipe = _resolve_recipe(recipe)
    work = detector if inplace else copy.deepcopy(detector)
    plan = _plan(work, recipe, example_batch(work, input_size))
    report = _report(plan, work)
    if report.totals["binarized_layers"] == 0:
        raise RecipeMatchError(
            f"recipe {recipe.name!r} ({recipe.source or 'built-in'}) binarizes no layer of "
            f"{type(work).__name__}: none of its rules matched a conv that is not first/last. "
            f"Check it with `autobin explain CONFIG --recipe {recipe.name}` and use a recipe "
            "whose `match` names this detector's modules, or det-adabin"
        )
    result = rewrite(plan, work)
    if result is not work:  # pragma: no cover - a detector's forward never traces as a whole
        raise RuntimeError("the detector traced as a whole; binarize its parts instead")
    _rehome(work, plan)
    work.autobin_report = report
    work.autobin_recipe = recipe
    return work


def graph_of(module: nn.Module) -> fx.Graph | None:
    """The rewritten fx graph a part's ``forward`` runs, if it was traced."""
    return module.__dict__.get("_autobin_graph")


__all__ = [
    "binarize_detector",
    "check_detector",
    "default_input_size",
    "example_batch",
    "explain_detector",
    "graph_of",
    "prediction_convs",
]
