"""Dataflow questions on the traced torch.fx graphs.

Which compute layers feed a node, whether a 1x1 conv sits on a light shortcut branch (or is
named like one), which nodes are functional activations (``F.relu``, ``x.relu()``, timm's
``swish``, ...), and the shapes a region's nodes carry.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..module_tools import eval_mode
from ..nn.activation_kinds import function_activation_kind, method_activation_kind
from .tracer import Region, is_compute_layer

NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
SHORTCUT_NAME_PARTS = ("downsample", "shortcut", "skip", "res_conv")
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
POOL_TYPES = (nn.AvgPool2d, nn.MaxPool2d, nn.Identity)
UPSTREAM_SEARCH_DEPTH = 8


def functional_kind(node: fx.Node) -> str | None:
    if node.op == "call_function":
        return function_activation_kind(node.target)
    if node.op == "call_method":
        return method_activation_kind(node.target)
    return None


def upstream_compute(gm: fx.GraphModule, start: fx.Node) -> tuple[list[str], bool]:
    """Compute-layer targets feeding ``start`` (through non-compute nodes), nearest first.

    Returns the targets found and whether the search hit the region's inputs (placeholders).
    """
    found: list[str] = []
    boundary = False
    frontier, visited = [start], {start}
    for _ in range(UPSTREAM_SEARCH_DEPTH):
        nxt = []
        for n in frontier:
            if n.op == "placeholder":
                boundary = True
                continue
            if n.op == "call_module" and is_compute_layer(gm.get_submodule(n.target)):
                found.append(n.target)
                continue
            for p in n.all_input_nodes:
                if p not in visited:
                    visited.add(p)
                    nxt.append(p)
        frontier = nxt
        if not frontier:
            break
    return found, boundary


def is_graph_shortcut(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A pointwise conv on a light parallel branch: its input forks, its output reaches an add
    (via norms) whose other operands carry a heavier conv.

    In a sum of parallel conv branches the heaviest branch is the main path: ResNet's 1x1
    downsample beside the 3x3 convs and RepVGG's 1x1 branch beside its 3x3 branch are
    shortcuts, while MobileOne's equal 1x1 branches are all main path. Only 1x1 convs qualify
    (a kxk conv is compute, not a shortcut); name based detection (``downsample``,
    ``shortcut``, ...) still applies to every kernel size.
    """
    module = gm.get_submodule(node.target)
    if not isinstance(module, nn.Conv2d) or tuple(module.kernel_size) != (1, 1):
        return False
    src = node.args[0] if node.args else None
    for _ in range(3):  # walk back through pools (ResNet-D: AvgPool -> 1x1 conv)
        if not isinstance(src, fx.Node):
            return False
        if len(src.users) >= 2:
            break
        if src.op == "call_module" and isinstance(gm.get_submodule(src.target), POOL_TYPES):
            src = src.args[0] if src.args else None
            continue
        return False
    else:
        return False
    cur = node
    for _ in range(3):
        users = list(cur.users)
        if len(users) != 1:
            return False
        user = users[0]
        is_add = (user.op == "call_function" and user.target in ADD_FUNCTIONS) or (
            user.op == "call_method" and user.target in ("add", "add_")
        )
        if is_add:
            others = [a for a in user.all_input_nodes if a is not cur]
            heaviest = _heaviest_conv(gm, others, stop=src)
            return heaviest > module.weight.numel()
        if user.op == "call_module" and isinstance(
            gm.get_submodule(user.target), (*NORM_TYPES, nn.Identity)
        ):
            cur = user
            continue
        return False
    return False


def _heaviest_conv(gm: fx.GraphModule, starts: list[fx.Node], stop: fx.Node) -> int:
    """Largest conv/linear weight (elements) feeding ``starts``, searching back to ``stop``."""
    heaviest, seen = 0, {stop}
    frontier = [n for n in starts if n not in seen]
    for _ in range(4 * UPSTREAM_SEARCH_DEPTH):
        nxt = []
        for n in frontier:
            seen.add(n)
            if n.op == "call_module":
                sub = gm.get_submodule(n.target)
                if is_compute_layer(sub):
                    heaviest = max(heaviest, sub.weight.numel())
            nxt.extend(p for p in n.all_input_nodes if p not in seen and p.op != "placeholder")
        if not nxt:
            break
        frontier = nxt
    return heaviest


def shortcut_by_name(name: str) -> bool:
    parts = name.lower().split(".")
    return any(key in part for part in parts for key in SHORTCUT_NAME_PARTS)


def call_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return f"{getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', '?')}"


def propagate_shapes(region: Region, captured: dict[str, tuple]) -> bool:
    inputs = captured.get(region.name)
    if inputs is None or inputs[1]:
        return False
    try:
        with eval_mode(region.graph_module), torch.no_grad():
            ShapeProp(region.graph_module).propagate(*inputs[0])
        return True
    except Exception:  # a graph that runs eagerly but not in the interpreter: no shapes
        return False
