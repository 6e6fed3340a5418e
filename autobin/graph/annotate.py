"""Annotate: decide every layer of a model under a recipe without changing the model.

This is the dry run behind :func:`autobin.explain`; :func:`autobin.binarize` applies the very
same plan, so the two always agree. Facts come from two sources:

* an eager forward pass on an example input (in eval mode, without gradients, modes restored
  afterwards) with hooks on every compute layer and activation: execution order (stem and
  classifier), input/output shapes (channel counts, MACs), and which modules really run;
* the torch.fx graphs of the traced regions: dataflow (does an activation follow a binarized
  layer, is a conv on a shortcut branch), functional activations, and where Bi-Real shortcuts go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from ..errors import BinarizeError
from ..nn import BinaryLayer
from ..recipes import LayerInfo, Recipe
from .conv_variants import unsupported_reason
from .dataflow import (
    call_name,
    functional_kind,
    is_graph_shortcut,
    propagate_shapes,
    shortcut_by_name,
    upstream_compute,
)
from .eager_pass import (
    UNSUPPORTED_LAYER_TYPES,
    CallRecord,
    count_macs,
    count_params,
    first_tensor,
    kept_state_bytes,
    record_calls,
    state_bytes_of,
    tensor_bytes,
)
from .families import ModelFamily, family_of
from .plan import ActivationEntry, Entry, LayerEntry, Plan, ShortcutEntry
from .tracer import (
    PassTracer,
    Region,
    activation_kind,
    is_compute_layer,
    tensor_shape,
    trace_regions,
    untrace_failing,
    unused_optional_arguments,
)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _channel_dim(shape: tuple[int, ...] | None, upstream_is_linear: bool | None) -> tuple[int, int]:
    """(channels, dim) of an activation input: dim 1 for NCHW, -1 for channels-last."""
    if shape is None or len(shape) < 2:
        raise ValueError("no shape")
    if len(shape) == 4 and not upstream_is_linear:
        return shape[1], 1
    return shape[-1], -1


def _layer_info(name, module, rec, first, last_names, last_order, graph_shortcut) -> LayerInfo:
    conv = isinstance(module, nn.Conv2d)
    return LayerInfo(
        name=name,
        type_name=type(module).__name__,
        kind="conv" if conv else "linear",
        kernel_size=tuple(module.kernel_size) if conv else None,
        groups=module.groups if conv else 1,
        in_channels=module.in_channels if conv else module.in_features,
        out_channels=module.out_channels if conv else module.out_features,
        # the first layer to run, and any other that reads the raw input (RepVGG's stem runs a
        # 1x1 and a 3x3 conv side by side on the image)
        is_first=rec.order == first or rec.takes_model_input,
        is_last=rec.order == last_order
        or any(name == c or name.startswith(c + ".") for c in last_names),
        is_shortcut=graph_shortcut or shortcut_by_name(name),
    )


# ---------------------------------------------------------------------------- the plan
def check_not_binarized(model: nn.Module) -> None:
    """Raise if ``model`` already contains binary layers."""
    for name, module in model.named_modules():
        if isinstance(module, BinaryLayer):
            raise BinarizeError(
                f"the model is already binarized ({name or 'the root'} is a "
                f"{type(module).__name__}); binarize the float model instead (the binarized "
                "model keeps it as its teacher)"
            )


def trace_family_parts(
    model: nn.Module, family: ModelFamily, example_inputs: Sequence[Any]
) -> list[Region]:
    """Trace the parts ``family`` names (the whole model, or a detector's parts).

    The whole model is called with ``example_inputs`` alone, so its other optional arguments
    are traced as None (:func:`~autobin.graph.tracer.unused_optional_arguments`).
    """
    tracer = PassTracer(family.leaf_modules(), family.leaf_functions())
    regions: list[Region] = []
    for part in family.trace_parts(model):
        module = model.get_submodule(part)
        concrete = unused_optional_arguments(module, len(example_inputs)) if not part else None
        regions += trace_regions(module, part, tracer, concrete)
    return regions


def annotate(
    model: nn.Module,
    recipe: Recipe,
    example_inputs: Sequence[Any] | torch.Tensor | None = None,
    family: ModelFamily | None = None,
) -> Plan:
    """Trace, run once and decide every layer of ``model`` under ``recipe``.

    ``family`` (default: the one ``model`` belongs to) supplies the example input, the parts
    to trace and the prediction layers. The model is not modified (its train/eval modes are
    restored after the eager pass).
    """
    check_not_binarized(model)
    family = family or family_of(model)
    if example_inputs is None:
        example_inputs = family.example_inputs(model)
    elif isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    first_input = first_tensor(list(example_inputs))
    batch = int(first_input.shape[0]) if first_input is not None and first_input.dim() else 1

    regions = trace_family_parts(model, family, example_inputs)
    traced = [r for r in regions if r.graph_module is not None]
    records, captured = record_calls(model, example_inputs, {r.name: r.module for r in traced})
    regions = untrace_failing(regions, captured)
    traced = [r for r in regions if r.graph_module is not None]

    # call_module nodes of compute layers and activations, by full name: every call site, and
    # the first one
    sites: dict[str, list[tuple[Region, fx.Node]]] = {}
    for region in traced:
        for node in region.graph_module.graph.nodes:
            if node.op == "call_module":
                sites.setdefault(_join(region.name, node.target), []).append((region, node))
    nodes = {name: calls[0] for name, calls in sites.items()}

    entries: list[Entry] = []
    compute = sorted(
        (r for r in records.values() if is_compute_layer(r.module)),
        key=lambda r: (r.order < 0, r.order),
    )
    called = [r for r in compute if r.calls > 0]
    first = called[0].order if called else -1
    last_order = called[-1].order if called else -1
    returned = [name for name, r in records.items() if r.returned and is_compute_layer(r.module)]
    last_names = family.prediction_layers(model, returned, example_inputs)
    binarized: set[str] = set()
    for rec in compute:
        module, name = rec.module, rec.name
        located = nodes.get(name)
        handled = "graph" if located else "module"
        base = {
            "name": name,
            "type_name": type(module).__name__,
            "layer_kind": "conv" if isinstance(module, nn.Conv2d) else "linear",
            "params": count_params(module),
            "weight_numel": module.weight.numel(),
            "out_channels": module.weight.shape[0],
            "state_bytes": state_bytes_of(module),
            "bias_bytes": tensor_bytes([module.bias]) if module.bias is not None else 0,
        }
        if rec.calls == 0:
            entries.append(
                LayerEntry(**base, decision="left alone", rule="-", handled_by="none",
                      reason="never called as a module in the forward pass (its weights are "
                      "used functionally or it is unused)")
            )  # fmt: skip
            continue
        unknown = unsupported_reason(module)
        if unknown is not None:
            entries.append(
                LayerEntry(**base, decision="float", rule="unsupported", reason=unknown,
                      handled_by="none", macs=count_macs(module, rec, batch))
            )  # fmt: skip
            continue
        graph_shortcut = located is not None and is_graph_shortcut(
            located[0].graph_module, located[1]
        )
        info = _layer_info(name, module, rec, first, last_names, last_order, graph_shortcut)
        decision = recipe.decide(info)
        macs = count_macs(module, rec, batch)
        if decision.action == "binarize":
            binarized.add(name)
            entries.append(
                LayerEntry(**base, decision="binarize", rule=decision.rule, reason=decision.reason,
                      handled_by=handled, macs=macs, method=decision.method,
                      options=dict(decision.options), region=located[0].name if located else None,
                      node=located[1] if located else None)
            )  # fmt: skip
        else:
            entries.append(
                LayerEntry(**base, decision="float", rule=decision.rule, reason=decision.reason,
                      handled_by="none", macs=macs)
            )  # fmt: skip

    entries += _unsupported_layers(records, batch)
    entries += _plan_activations(recipe, records, sites, traced, binarized, captured)
    if recipe.shortcuts.bireal:
        entries += _plan_shortcuts(entries, records)
    entries = _in_execution_order(entries, records)
    float_params = sum(p.numel() for p in model.parameters())
    float_bytes = state_bytes_of(model)
    kept_bytes = kept_state_bytes(model, regions)
    input_shape = tuple(first_input.shape[1:]) if first_input is not None else None
    return Plan(recipe, regions, entries, float_params, float_bytes, kept_bytes, batch, input_shape,
                example_inputs)  # fmt: skip


def _unsupported_layers(records: dict[str, CallRecord], batch: int) -> list[Entry]:
    """Weight layers no binary layer covers (Conv1d, Conv3d, transposed convs): kept float."""
    entries = []
    for name, rec in records.items():
        module = rec.module
        if not isinstance(module, UNSUPPORTED_LAYER_TYPES):
            continue
        kind = type(module).__name__
        entries.append(
            LayerEntry(name=name, type_name=kind, decision="float", rule="unsupported",
                  handled_by="none", macs=count_macs(module, rec, batch) if rec.calls else 0,
                  params=count_params(module), reason=f"{kind} is not supported by autobin's "
                  "binary layers (Conv2d and Linear only): kept float")
        )  # fmt: skip
    return entries


def _in_execution_order(entries: list[Entry], records: dict[str, CallRecord]) -> list[Entry]:
    """Entries sorted by when their module first ran (a shortcut right after its conv).

    Entries without a recorded call (functional activations, modules that never ran) keep
    their relative order at the end.
    """

    def key(entry: Entry) -> tuple[int, float]:
        base = entry.name.split("@")[0].removesuffix("+shortcut")
        rec = records.get(base)
        if rec is None or rec.seq < 0:
            return (1, 0.0)
        return (0, rec.seq + (0.5 if entry.kind == "shortcut" else 0.0))

    return sorted(entries, key=key)


def _upstream(region: Region | None, node: fx.Node | None, rec: CallRecord | None) -> list[str]:
    """Full names of the compute layers feeding an activation, nearest first.

    Uses the graph where the activation is a node; where the search reaches the region's inputs
    without finding one (or there is no graph), falls back to the last compute layer that ran
    before it in the eager pass.
    """
    upstream: list[str] = []
    boundary = True
    if region is not None and node is not None and node.args:
        src = node.args[0]
        if isinstance(src, fx.Node):
            found, boundary = upstream_compute(region.graph_module, src)
            upstream = [_join(region.name, t) for t in found]
    if not upstream and boundary and rec is not None and rec.prev_compute:
        upstream = [rec.prev_compute]
    return upstream


def _plan_activations(recipe, records, sites, traced, binarized, captured) -> list[Entry]:
    entries: list[Entry] = []
    scope_all = recipe.activations.scope == "all"
    linear_names = {n for n, r in records.items() if isinstance(r.module, nn.Linear)}

    def decide(kind: str, follows: bool) -> tuple[bool, str]:
        if not recipe.replaces_activation(kind):
            return False, f"recipe does not replace {kind}"
        if scope_all:
            return True, f"{kind} -> Maxout (scope: all)"
        if follows:
            return True, f"{kind} follows a binarized layer -> Maxout"
        return False, f"{kind} does not follow a binarized layer (scope: after_binary)"

    # activation modules (each call site in a graph, else the module itself)
    for name, rec in records.items():
        kind = activation_kind(rec.module)
        if kind is None:
            continue
        base = {"name": name, "type_name": type(rec.module).__name__,
                "state_bytes": state_bytes_of(rec.module)}  # fmt: skip
        if rec.calls == 0:
            never = "never called in the forward pass"
            entries.append(ActivationEntry(**base, decision="left alone", rule="-",
                                           handled_by="none", reason=never))  # fmt: skip
            continue
        calls = sites.get(name, [])
        if len(calls) > 1 and len(rec.in_shape_seq) == len(calls):
            # one module, several call sites in a graph (DLA's bottleneck calls one ReLU after
            # each conv): a Maxout per call site, each with its own channels and parameters
            for (region, node), shape in zip(calls, rec.in_shape_seq):
                upstream = _upstream(region, node, None)
                replace, reason = decide(kind, any(u in binarized for u in upstream))
                entries.append(
                    _call_site_entry(
                        base,
                        region,
                        node,
                        shape,
                        replace,
                        reason,
                        bool(upstream) and upstream[0] in linear_names,
                    )
                )
            continue
        located = calls[0] if calls else None
        region, node = located if located else (None, None)
        upstream = _upstream(region, node, rec)
        replace, reason = decide(kind, any(u in binarized for u in upstream))
        nearest_linear = bool(upstream) and upstream[0] in linear_names
        try:
            channels, dim = _channel_dim(rec.in_shape, nearest_linear)
        except ValueError:
            replace, reason = False, f"{kind}: input shape unknown or not 2-4-D"
            channels, dim = None, None
        if replace and len(rec.in_shapes) > 1:
            replace = False
            reason = (
                f"{kind} module is shared by call sites with different input shapes outside a "
                "traced graph; one Maxout cannot serve them all"
            )
        entries.append(
            ActivationEntry(**base, decision="maxout" if replace else "keep", rule="activations",
                  reason=reason, handled_by=("graph" if located else "module") if replace
                  else "none", channels=channels, channel_dim=dim,
                  region=region.name if region else None, node=node)
        )  # fmt: skip

    # functional activations (F.relu, torch.relu, x.relu(), timm's swish, ...)
    for region in traced:
        gm = region.graph_module
        candidates = [n for n in gm.graph.nodes if functional_kind(n) is not None]
        if not candidates:
            continue
        shapes_ok = propagate_shapes(region, captured)
        for node in candidates:
            kind = functional_kind(node)
            upstream = _upstream(region, node, None)
            replace, reason = decide(kind, any(u in binarized for u in upstream))
            nearest_linear = bool(upstream) and upstream[0] in linear_names
            shape = tensor_shape(node.args[0]) if shapes_ok and node.args else None
            try:
                channels, dim = _channel_dim(shape, nearest_linear)
            except ValueError:
                channels, dim = None, None
                if replace:
                    replace, reason = False, f"{kind}: no shape for this call (shape propagation"
                    reason += " failed)" if not shapes_ok else " gave none)"
            entries.append(
                ActivationEntry(name=_join(region.name, node.name), type_name=call_name(node),
                      decision="maxout" if replace else "keep",
                      rule="activations", reason=reason,
                      handled_by="graph" if replace else "none", channels=channels,
                      channel_dim=dim, region=region.name, node=node)
            )  # fmt: skip
    return entries


def _call_site_entry(base, region, node, shape, replace, reason, nearest_linear) -> Entry:
    """Entry for one call of an activation module shared by several call sites of a graph."""
    kind = base["type_name"]
    try:
        channels, dim = _channel_dim(shape, nearest_linear)
    except ValueError:
        channels, dim = None, None
        if replace:
            replace, reason = False, f"{kind}: input shape unknown or not 2-4-D"
    if replace:
        reason += f" (one Maxout per call site of the shared module, here {node.name})"
    return ActivationEntry(
        **{**base, "name": f"{base['name']}@{node.name}", "state_bytes": 0},
        decision="maxout" if replace else "keep",
        rule="activations",
        reason=reason,
        handled_by="graph" if replace else "none",
        channels=channels,
        channel_dim=dim,
        call_site=True,
        region=region.name,
        node=node,
    )


def _plan_shortcuts(entries: list[Entry], records: dict[str, CallRecord]) -> list[Entry]:
    """Bi-Real shortcuts around binarized convs (+ their norm) whose shapes match."""
    out: list[Entry] = []
    for e in entries:
        if e.decision != "binarize" or e.kind != "conv":
            continue
        rec = records[e.name]
        # the rewrite inserts an add node into the graph (no module): the report says so
        base = {"name": f"{e.name}+shortcut", "type_name": "operator.add"}
        if rec.in_shape is None or rec.in_shape != rec.out_shape:
            continue  # shapes differ (stride or channels): no identity shortcut, by design
        if e.node is None:
            out.append(ShortcutEntry(**base, decision="left alone", rule="shortcuts",
                             handled_by="none", reason="conv is inside an untraced/leaf module; "
                             "a shortcut needs the graph"))  # fmt: skip
            continue
        out.append(ShortcutEntry(**base, decision="shortcut", rule="shortcuts", handled_by="graph",
                         reason="Bi-Real identity shortcut (an add node after the conv's norm): "
                         "input and output shapes match",
                         region=e.region, node=e.node))  # fmt: skip
    return out
