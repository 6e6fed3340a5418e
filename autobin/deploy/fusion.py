"""Graph passes of :func:`autobin.deploy.deploy` that fuse glue into the deployed layers.

* :func:`fuse_glue`: a shortcut add and a Maxout after a packed conv move into its epilogue, and
  a packed conv feeding another one writes its output bit-packed for it;
* :func:`low_precision_float_parts`: float convs become int8/bf16 convs
  (:mod:`.float_parts`), a Maxout after one moving into its epilogue.

Every pass keeps each value's rounding: the fused model equals the layer-by-layer one.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from ..module_tools import set_module
from .float_parts import choose_precision, low_precision_conv
from .layers import InferenceMaxout, PackedConv2d

ADDS = (operator.add, torch.add, operator.iadd)


def module_call_counts(gm: fx.GraphModule) -> dict[str, int]:
    """How many ``call_module`` nodes of ``gm`` call each submodule (by target)."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


"""The graph functions that add two tensors (a shortcut)."""


def join_path(prefix: str, name: str) -> str:
    """``prefix.name`` (just ``name`` at the root)."""
    return f"{prefix}.{name}" if prefix else name


def _drop_identities(gm: fx.GraphModule) -> bool:
    """Remove calls of ``nn.Identity`` (timm's drop_block/aa placeholders) from a graph."""
    changed = False
    for node in list(gm.graph.nodes):
        if (
            node.op == "call_module"
            and type(gm.get_submodule(node.target)) is nn.Identity
            and len(node.args) == 1
            and not node.kwargs
            and isinstance(node.args[0], fx.Node)
        ):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            changed = True
    return changed


def _channel_maxout(module: nn.Module, channels: int) -> bool:
    """An InferenceMaxout over dim 1 of a 4-D tensor with ``channels`` channels."""
    if not isinstance(module, InferenceMaxout) or module.num_channels != channels:
        return False
    dim = module.maxout.channel_dim
    return dim is None or dim % 4 == 1


def fuse_glue(root: nn.Module) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Move the glue after packed convs into their epilogues (fx graphs only).

    ``conv -> [+ r] -> Maxout`` becomes one call ``conv(x, r)`` whose kernel adds ``r`` and
    applies the Maxout per output pixel; and a packed conv whose output feeds another packed
    conv directly writes that output binarized and bit-packed for it as well. Every step keeps
    the rounding of the module it replaces, so the values are those of the unfused model.
    Returns ``({conv path: Maxout path}, [convs adding the shortcut], {producer: consumer})``.
    """
    maxouts: dict[str, str] = {}
    adds: list[str] = []
    packs: dict[str, str] = {}
    for prefix, gm in list(root.named_modules()):
        if not isinstance(gm, fx.GraphModule):
            continue
        changed = _drop_identities(gm)
        calls = module_call_counts(gm)
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
                continue
            conv = gm.get_submodule(node.target)
            if type(conv) is not PackedConv2d or conv.fused_maxout is not None:
                continue
            (user,) = node.users
            extra = None
            if (
                user.op == "call_function" and user.target in ADDS and not user.kwargs
                and len(user.args) == 2 and len(user.users) == 1
            ):  # fmt: skip
                others = [a for a in user.args if a is not node]
                if len(others) == 1 and isinstance(others[0], fx.Node):
                    extra, add = others[0], user
                    (user,) = user.users
            if user.op != "call_module" or calls.get(user.target) != 1:
                continue
            maxout = gm.get_submodule(user.target)
            if not _channel_maxout(maxout, conv.out_channels):
                continue
            conv.fuse_glue(maxout=maxout, adds_extra=extra is not None)
            if extra is not None:
                add.prepend(node)  # after the shortcut's own computation
                node.args = (node.args[0], extra)
                add.replace_all_uses_with(node)
                gm.graph.erase_node(add)
                adds.append(join_path(prefix, node.target))
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
            maxouts[join_path(prefix, node.target)] = join_path(prefix, user.target)
            changed = True
        for node in gm.graph.nodes:
            if node.op != "call_module" or type(gm.get_submodule(node.target)) is not PackedConv2d:
                continue
            for user in node.users:
                consumer = gm.get_submodule(user.target) if user.op == "call_module" else None
                if type(consumer) is PackedConv2d and user.args[0] is node:
                    producer = gm.get_submodule(node.target)
                    producer.fuse_glue(
                        maxout=producer.fused_maxout, adds_extra=producer.adds_extra,
                        next_input=(consumer.threshold, consumer.groups),
                    )  # fmt: skip
                    packs[join_path(prefix, node.target)] = join_path(prefix, user.target)
                    break
        if changed:
            gm.graph.lint()
            gm.recompile()
    return maxouts, adds, packs


def low_precision_float_parts(
    root: nn.Module,
    float_parts: str,
    input_conv: nn.Module | None,
    keep: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, str], dict[str, str]]:
    """Replace the float convs ``float_parts`` selects by int8/bf16 ones
    (:mod:`.float_parts`); in fx graphs a channel Maxout right after one is done in its
    epilogue. ``input_conv``: the conv applied to the model's input (the stem); ``keep``: paths
    of convs that stay float32. Returns
    ``({conv path: "int8" or "bf16"}, {conv path: fused Maxout path})``."""
    kinds: dict[str, str] = {}
    fused: dict[str, str] = {}
    kept = {id(m) for name, m in root.named_modules() if name in keep}

    def precision(conv: nn.Module) -> str:
        if type(conv) is not nn.Conv2d or id(conv) in kept:
            return "fp32"
        return choose_precision(conv, float_parts, stem=conv is input_conv)

    for prefix, gm in list(root.named_modules()):
        if not isinstance(gm, fx.GraphModule):
            continue
        calls = module_call_counts(gm)
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
                continue
            conv = gm.get_submodule(node.target)
            kind = precision(conv)
            if kind == "fp32":
                continue
            (user,) = node.users
            maxout = None
            if user.op == "call_module" and calls.get(user.target) == 1:
                candidate = gm.get_submodule(user.target)
                if _channel_maxout(candidate, conv.out_channels):
                    maxout = candidate
                    user.replace_all_uses_with(node)
                    gm.graph.erase_node(user)
                    fused[join_path(prefix, node.target)] = join_path(prefix, user.target)
                    changed = True
            set_module(gm, node.target, low_precision_conv(conv, kind, maxout))
            kinds[join_path(prefix, node.target)] = kind
        if changed:
            gm.graph.lint()
            gm.recompile()
    for name, m in list(root.named_modules()):
        kind = precision(m)
        if kind != "fp32":
            set_module(root, name, low_precision_conv(m, kind))
            kinds[name] = kind
    return kinds, fused


def first_conv(model: nn.Module) -> nn.Module | None:
    """The conv the model applies to its input (as :func:`_input_channels` finds it)."""
    if isinstance(model, fx.GraphModule):
        placeholders = [n for n in model.graph.nodes if n.op == "placeholder"]
        for user in placeholders[0].users if placeholders else []:
            if user.op == "call_module" and isinstance(model.get_submodule(user.target), nn.Conv2d):
                return model.get_submodule(user.target)
        return None
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


__all__ = [
    "ADDS",
    "first_conv",
    "fuse_glue",
    "join_path",
    "low_precision_float_parts",
    "module_call_counts",
]
