"""Rewrite: apply an annotated plan to a model (the second half of :func:`autobin.binarize`).

Traced regions are installed as their GraphModules; then, for every planned change:

* a compute layer to binarize is swapped for its binary layer at the same qualified name
  (a ``call_module`` target in a graph, or a module inside a leaf/untraced module);
* an activation module becomes a :class:`~autobin.nn.Maxout` at the same name;
* a functional activation node, and each call of an activation module that a graph calls at
  several sites, becomes a call of a new Maxout submodule ``maxout_<node>``;
* a Bi-Real shortcut inserts ``add(norm_out, conv_in)`` after the binarized conv's norm.

Names are deterministic, so binarizing a fresh copy of the same architecture with the same
recipe gives the same ``state_dict`` keys.
"""

from __future__ import annotations

import contextlib
import operator

from torch import fx, nn

from ..float_reference import keep_attribute
from ..nn import Maxout, method_spec
from .conv_variants import as_plain_layer
from .dataflow import NORM_TYPES
from .plan import Entry, Plan

TIMM_ATTRIBUTES = (
    "pretrained_cfg",
    "default_cfg",
    "num_classes",
    "num_features",
    "head_hidden_size",
    "global_pool",
    "feature_info",
    "in_chans",
)
"""Model metadata kept on a traced result (timm's attributes users and the zoo rely on)."""


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _binary_layer(module: nn.Module, entry: Entry) -> nn.Module:
    plain, extra = as_plain_layer(module)  # timm's conv variants: same padding, standardization
    options = {**entry.options, **extra}
    spec = method_spec(entry.method)
    if isinstance(plain, nn.Conv2d):
        return spec.conv.from_float(plain, **options)
    return spec.linear.from_float(plain, **options)


def _maxout(entry: Entry, training: bool, device) -> Maxout:
    m = Maxout(entry.channels, channel_dim=entry.channel_dim, device=device)
    return m.train(training)


def _install_regions(plan: Plan, model: nn.Module) -> nn.Module:
    root = model
    for region in plan.regions:
        gm = region.graph_module
        if gm is None:
            continue
        gm.train(region.module.training)
        if region.name == "":
            for attr in TIMM_ATTRIBUTES:
                if attr in model.__dict__ or attr in type(model).__dict__:
                    # read-only properties on the model's class are skipped
                    with contextlib.suppress(AttributeError):
                        keep_attribute(gm, attr, getattr(model, attr))
            root = gm
        else:
            _set_module(root, region.name, gm)
    return root


def _replace_functional(gm: fx.GraphModule, entry: Entry, device) -> None:
    node = entry.node
    name = f"maxout_{node.name}"
    gm.add_submodule(name, _maxout(entry, gm.training, device))
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _insert_shortcut(gm: fx.GraphModule, conv_node: fx.Node) -> None:
    tail = conv_node
    users = list(conv_node.users)
    if (
        len(users) == 1
        and users[0].op == "call_module"
        and isinstance(gm.get_submodule(users[0].target), NORM_TYPES)
    ):
        tail = users[0]
    with gm.graph.inserting_after(tail):
        add = gm.graph.call_function(operator.add, (tail, conv_node.args[0]))
    tail.replace_all_uses_with(add, delete_user_cb=lambda user: user is not add)


def rewrite(plan: Plan, model: nn.Module) -> nn.Module:
    """Apply ``plan`` (made by :func:`annotate` on ``model``) and return the binarized module.

    ``model``'s modules are reused: pass a copy unless it may be modified.
    """
    root = _install_regions(plan, model)
    graphs = {r.name: r.graph_module for r in plan.regions if r.graph_module is not None}
    touched: set[str] = set()
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    for entry in plan.entries:
        if entry.decision == "binarize":
            old = root.get_submodule(entry.name)
            _set_module(root, entry.name, _binary_layer(old, entry))
        elif entry.decision == "maxout" and entry.kind == "activation":
            if entry.node is not None and (entry.node.op != "call_module" or entry.call_site):
                _replace_functional(graphs[entry.region], entry, device)
                touched.add(entry.region)
            else:
                old = root.get_submodule(entry.name)
                _set_module(root, entry.name, _maxout(entry, old.training, device))
        elif entry.decision == "shortcut":
            _insert_shortcut(graphs[entry.region], entry.node)
            touched.add(entry.region)
    for name in touched:
        gm = graphs[name]
        gm.graph.lint()
        gm.recompile()
    return root
