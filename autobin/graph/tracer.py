"""The graph pass's torch.fx tracer, and tracing with a recursive fallback.

The model family names modules and functions that must not be traced through (timm's dynamic
padding, shape dependent control flow); the tracer treats them as leaves. Convolutions, linears,
activations and autobin's own layers are leaves too, so every compute layer is one
``call_module`` node.

:func:`trace_regions` traces the whole model if it can; where it cannot, it traces each child
recursively, so the parts that trace are still rewritten on the graph and only the rest falls
back to module replacement.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_map

from ..module_tools import eval_mode
from ..nn import BinaryLayer, BiRealShortcut, Maxout
from ..nn.activation_kinds import module_activation_kind


def activation_kind(module: nn.Module) -> str | None:
    """The recipe activation kind of ``module`` (e.g. ``"relu"``), or None if not an activation."""
    return module_activation_kind(module)


def is_compute_layer(module: nn.Module) -> bool:
    """True for the layers a recipe decides on: ``nn.Conv2d``/``nn.Linear`` and subclasses."""
    return isinstance(module, (nn.Conv2d, nn.Linear))


class PassTracer(fx.Tracer):
    """``torch.fx`` tracer of the graph pass: compute layers, activations, autobin's own layers
    and the model family's leaf modules and functions are leaves (one ``call_module`` node each).
    """

    def __init__(
        self, leaf_modules: tuple[type, ...] = (), leaf_functions: tuple[Any, ...] = ()
    ) -> None:
        super().__init__(autowrap_functions=leaf_functions)
        self._leaf_types = (*leaf_modules, BinaryLayer, Maxout, BiRealShortcut)
        self.leaf_modules, self.leaf_functions = leaf_modules, leaf_functions

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self._leaf_types) or is_compute_layer(m):
            return True
        if activation_kind(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


@dataclass
class Region:
    """A module subtree and how it was traced.

    Attributes:
        name: qualified name of the subtree root (``""`` for the whole model).
        module: the subtree root.
        graph_module: its traced graph, or None if it could not be traced.
        error: why tracing failed (one line), when it did.
    """

    name: str
    module: nn.Module
    graph_module: fx.GraphModule | None
    error: str = ""


def unused_optional_arguments(module: nn.Module, given: int) -> dict[str, None]:
    """``forward``'s arguments after the first ``given`` positional ones whose default is None.

    A model called with its example input alone gets None for these; tracing them as inputs
    would trace the branch for a value (``if mask is not None: mask.view(...)``), so they are
    traced as the constant None instead.
    """
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        p.name: None
        for i, p in enumerate(params)
        if p.default is None
        and not (i < given and p.kind in positional)
        and p.kind != inspect.Parameter.POSITIONAL_ONLY
    }


def trace_module(
    module: nn.Module, tracer: PassTracer | None = None, concrete_args: dict | None = None
) -> fx.GraphModule:
    """Trace ``module`` with ``tracer`` (default: a :class:`PassTracer`); return the GraphModule.

    ``concrete_args`` are traced as constants (see :func:`unused_optional_arguments`).
    """
    tracer = (
        PassTracer() if tracer is None else PassTracer(tracer.leaf_modules, tracer.leaf_functions)
    )
    graph = tracer.trace(module, concrete_args=concrete_args or None)
    name = type(module).__name__
    gm = fx.GraphModule(tracer.root, graph, name)
    keep_hierarchy(module, gm)
    _unpersist_constants(gm)
    return gm


def keep_hierarchy(module: nn.Module, gm: fx.GraphModule) -> None:
    """Give ``gm`` the children, parameters and buffers of ``module`` itself.

    ``fx.GraphModule`` copies only what its graph uses and rebuilds the containers on the way
    as bare ``nn.Module``s: ``model.layer1[0]`` would stop working, ``nn.Sequential`` types and
    unused modules would be lost, and the ``state_dict`` would differ from the float model's.
    Every graph target resolves the same way in the original tree (it was traced from it), so
    the original children are installed instead; their own ``forward`` is not called (the
    graph's code is).
    """
    extra_modules = {k: v for k, v in gm._modules.items() if k not in module._modules}
    gm._modules.clear()
    gm._modules.update(module._modules)
    gm._modules.update(extra_modules)
    gm._parameters.clear()
    gm._parameters.update(module._parameters)
    constants = {k: v for k, v in gm._buffers.items() if k not in module._buffers}
    gm._buffers.clear()
    gm._buffers.update(module._buffers)
    gm._buffers.update(constants)
    gm._non_persistent_buffers_set = set(module._non_persistent_buffers_set)


def _unpersist_constants(gm: fx.GraphModule) -> None:
    """Keep the tensors fx captured while tracing out of the ``state_dict``.

    Tensors computed at trace time (e.g. ``self.index.view(-1)`` on a buffer, Swin's relative
    position index and attention mask) become ``_tensor_constantN`` buffers of the GraphModule,
    persistent by default: they would add keys (and bytes) that the model never had as state.
    They stay buffers (``.to()`` moves them), just not saved.
    """
    for module in gm.modules():
        for buffer_name in module._buffers:
            if buffer_name.startswith("_tensor_constant"):
                module._non_persistent_buffers_set.add(buffer_name)


def trace_regions(
    model: nn.Module,
    prefix: str = "",
    tracer: PassTracer | None = None,
    concrete_args: dict | None = None,
) -> list[Region]:
    """Trace ``model``; where it fails, trace its children recursively.

    Returns the traced regions and, for every module that could not be traced, a region with
    ``graph_module=None`` (its own code stays eager; its children are listed separately).
    Children that a whole-model trace would keep as leaves (compute layers, activations,
    ``torch.nn`` built-ins, timm's no-trace modules) are not traced on their own; the layers
    inside them are replaced as modules. ``ModuleList``/``ModuleDict`` have no forward: their
    items are traced one by one.
    """
    try:
        return [Region(prefix, model, trace_module(model, tracer, concrete_args))]
    except Exception as exc:  # tracing errors come in many types (TraceError, TypeError, ...)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = f"{type(exc).__name__}: {first_line[:160]}"
    return [Region(prefix, model, None, reason), *_trace_children(model, prefix, tracer)]


def untrace_failing(regions: list[Region], captured: dict[str, tuple]) -> list[Region]:
    """``regions`` where a traced graph that raises on the inputs its module really got is
    dropped (the region becomes untraced: its layers are replaced as modules).

    A trace fixes each branch on an argument as it went with the proxy: ``if mask is not None``
    takes the ``not None`` side although the model passes None (mmdet's DETR positional
    encoding). ``captured`` holds each region's first call's ``(args, kwargs)``; regions never
    called are kept as they are.
    """
    checked: list[Region] = []
    for region in regions:
        inputs = captured.get(region.name)
        if region.graph_module is not None and inputs is not None:
            args, kwargs = tree_map(_copy_tensor, inputs)  # the graph may work in place
            try:
                with eval_mode(region.graph_module), torch.no_grad():
                    region.graph_module(*args, **kwargs)
            except Exception as exc:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                error = f"its traced graph fails on the inputs it gets ({type(exc).__name__}: "
                region = Region(region.name, region.module, None, f"{error}{first_line[:120]})")
        checked.append(region)
    return checked


def _copy_tensor(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _trace_children(model: nn.Module, prefix: str, tracer: PassTracer | None) -> list[Region]:
    regions: list[Region] = []
    leaf_check = tracer or PassTracer()
    for child_name, child in model.named_children():
        qual = f"{prefix}.{child_name}" if prefix else child_name
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            regions.extend(
                _trace_children(child, qual, tracer)
            )  # containers have no forward to trace
        elif not leaf_check.is_leaf_module(child, qual):
            regions.extend(trace_regions(child, qual, tracer))
        # else: a single layer, or a module a whole-model trace would not enter either (torch.nn
        # built-ins such as BatchNorm2d, timm's no-trace modules): module replacement handles
        # what is inside, and tracing it would only report a spurious failure
    return regions


def tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    """Shape recorded on ``node`` by shape propagation, if it produced one tensor."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)


__all__ = [
    "PassTracer",
    "Region",
    "activation_kind",
    "is_compute_layer",
    "keep_hierarchy",
    "tensor_shape",
    "trace_module",
    "trace_regions",
    "untrace_failing",
]
