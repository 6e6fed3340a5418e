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

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import BinarizeError
from ..nn import BinaryLayer
from ..recipes import LayerInfo, Recipe
from .conv_variants import unsupported_reason
from .tracer import Region, activation_kind, is_compute_layer, tensor_shape, trace_regions

NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
SHORTCUT_NAME_PARTS = ("downsample", "shortcut", "skip", "res_conv")
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
POOL_TYPES = (nn.AvgPool2d, nn.MaxPool2d, nn.Identity)
UNSUPPORTED_LAYER_TYPES = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""Weight layers the binary layers do not cover: listed in the report, kept float."""
DEFAULT_IMAGE_SIZE = (224, 224)
FUNCTIONAL_ACTIVATIONS: dict[Any, str] = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.hardswish: "hardswish",
    F.mish: "mish",
}
METHOD_ACTIVATIONS = {"relu": "relu", "relu_": "relu"}
TIMM_FUNCTION_ACTIVATIONS = {
    "swish": "silu",
    "hard_swish": "hardswish",
    "mish": "mish",
    "gelu": "gelu",
    "gelu_tanh": "gelu",
    "quick_gelu": "gelu",
}
UPSTREAM_SEARCH_DEPTH = 8


@dataclass
class CallRecord:
    """What the eager pass saw of one module."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None
    in_shapes: set[tuple[int, ...]] = field(default_factory=set)  # over all calls
    in_shape_seq: list[tuple[int, ...] | None] = field(default_factory=list)  # call by call
    order: int = -1  # execution order among compute layers (first call)
    seq: int = -1  # execution order among all hooked modules (first call)
    prev_compute: str | None = None  # last compute layer that ran before this module
    takes_model_input: bool = False  # its input is one of the model's input tensors
    calls: int = 0


@dataclass
class Entry:
    """One line of the plan: a layer, an activation or a shortcut, and what happens to it.

    ``decision`` is one of ``binarize``, ``float`` (compute layers), ``maxout``, ``keep``
    (activations), ``shortcut`` (Bi-Real shortcut), ``left alone`` (cannot be handled).
    ``handled_by`` is ``graph`` (rewritten in a traced fx graph), ``module`` (module
    replacement: inside a leaf module or an untraced part) or ``none``.
    """

    name: str
    type_name: str
    kind: str
    decision: str
    rule: str
    reason: str
    handled_by: str
    macs: int = 0
    params: int = 0
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    weight_numel: int = 0
    out_channels: int = 0
    channels: int | None = None
    channel_dim: int | None = None
    call_site: bool = field(default=False, repr=False)  # one call of a shared module (graph)
    state_bytes: int = field(default=0, repr=False)  # bytes of the replaced module's state_dict
    bias_bytes: int = field(default=0, repr=False)
    region: str | None = field(default=None, repr=False)
    node: fx.Node | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "type": self.type_name,
            "kind": self.kind,
            "decision": self.decision,
            "rule": self.rule,
            "reason": self.reason,
            "handled_by": self.handled_by,
            "macs": self.macs,
            "params": self.params,
        }
        if self.method is not None:
            d["method"] = self.method
            d["options"] = dict(self.options)
        if self.channels is not None:
            d["channels"] = self.channels
        return d


@dataclass
class Plan:
    """The annotated model: regions, every entry, and what is needed to rewrite it."""

    recipe: Recipe
    regions: list[Region]
    entries: list[Entry]
    float_params: int
    float_bytes: int  # the float model's state_dict
    kept_bytes: int  # the state the rewrite starts from (GraphModules drop unused modules)
    batch: int
    input_shape: tuple[int, ...] | None = None  # the example input without its batch dim


# ---------------------------------------------------------------------------- eager pass
def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def record_calls(
    model: nn.Module, example_inputs: Sequence[Any], capture: dict[str, nn.Module]
) -> tuple[dict[str, CallRecord], dict[str, tuple]]:
    """Run ``model`` once with hooks; return call records and the inputs of ``capture``."""
    records: dict[str, CallRecord] = {}
    captured: dict[str, tuple] = {}
    state = {"order": 0, "seq": 0, "last_compute": None}
    handles = []
    seen: set[int] = set()
    model_inputs = [t for t in example_inputs if isinstance(t, torch.Tensor)]

    def make_hook(rec: CallRecord, compute: bool):
        def hook(_mod, args, output):
            rec.calls += 1
            x, y = _first_tensor(args), _first_tensor(output)
            rec.in_shape_seq.append(tuple(x.shape) if x is not None else None)
            if x is not None:
                rec.in_shapes.add(tuple(x.shape))
                rec.takes_model_input |= any(x is t for t in model_inputs)
            if rec.calls > 1:
                return
            rec.in_shape = tuple(x.shape) if x is not None else None
            rec.out_shape = tuple(y.shape) if y is not None else None
            rec.prev_compute = state["last_compute"]
            rec.seq = state["seq"]
            state["seq"] += 1
            if compute:
                rec.order = state["order"]
                state["order"] += 1

        return hook

    def compute_done(name):
        def hook(_mod, _args, _output):
            state["last_compute"] = name

        return hook

    def make_capture(name):
        def pre_hook(_mod, args, kwargs):
            if name not in captured:
                captured[name] = (args, kwargs)

        return pre_hook

    try:
        for name, module in model.named_modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            compute = is_compute_layer(module)
            unsupported = isinstance(module, UNSUPPORTED_LAYER_TYPES)
            if compute or unsupported or activation_kind(module) is not None:
                rec = records[name] = CallRecord(name, module)
                handles.append(module.register_forward_hook(make_hook(rec, compute)))
                if compute:
                    handles.append(module.register_forward_hook(compute_done(name)))
        for name, module in capture.items():
            handles.append(module.register_forward_pre_hook(make_capture(name), with_kwargs=True))
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.no_grad():
                model(*example_inputs)
        except Exception as exc:
            raise BinarizeError(_forward_failed(example_inputs, exc)) from exc
        finally:
            for m, mode in modes.items():
                m.training = mode
    finally:
        for h in handles:
            h.remove()
    return records, captured


def _forward_failed(example_inputs: Sequence[Any], exc: Exception) -> str:
    shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
              for t in example_inputs]  # fmt: skip
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return (
        f"the example forward pass failed with inputs of shape {shapes} "
        f"({type(exc).__name__}: {first}); autobin runs the model once to see its layers: pass "
        "example_inputs=(torch.randn(1, C, H, W),) with the shape your model takes (CLI: "
        "--in-chans C --input-size H W)"
    )


# ---------------------------------------------------------------------------- graph helpers
def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _functional_kind(node: fx.Node) -> str | None:
    if node.op == "call_function":
        kind = FUNCTIONAL_ACTIVATIONS.get(node.target)
        if kind is None and getattr(node.target, "__module__", "").startswith("timm."):
            kind = TIMM_FUNCTION_ACTIVATIONS.get(getattr(node.target, "__name__", ""))
        return kind
    if node.op == "call_method":
        return METHOD_ACTIVATIONS.get(node.target)
    return None


def _upstream_compute(gm: fx.GraphModule, start: fx.Node) -> tuple[list[str], bool]:
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


def _is_graph_shortcut(gm: fx.GraphModule, node: fx.Node) -> bool:
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


def _shortcut_by_name(name: str) -> bool:
    parts = name.lower().split(".")
    return any(key in part for part in parts for key in SHORTCUT_NAME_PARTS)


def _channel_dim(shape: tuple[int, ...] | None, upstream_is_linear: bool | None) -> tuple[int, int]:
    """(channels, dim) of an activation input: dim 1 for NCHW, -1 for channels-last."""
    if shape is None or len(shape) < 2:
        raise ValueError("no shape")
    if len(shape) == 4 and not upstream_is_linear:
        return shape[1], 1
    return shape[-1], -1


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    clf = cfg.get("classifier") if isinstance(cfg, dict) else None
    if isinstance(clf, str):
        return (clf,)
    if isinstance(clf, (list, tuple)):
        return tuple(c for c in clf if isinstance(c, str))
    return ()


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _state_bytes(module: nn.Module) -> int:
    """Bytes of everything ``module`` saves (its whole subtree is dropped when it is replaced)."""
    return _nbytes(module.state_dict().values())


def _kept_bytes(model: nn.Module, regions: list[Region]) -> int:
    """State bytes of ``model`` once its traced regions are installed as GraphModules.

    A GraphModule keeps only the modules and attributes its graph uses, so the rewritten model
    can save less than the float model (a head that forward never calls, for example).
    """
    traced = [r for r in regions if r.graph_module is not None]
    root = next((r for r in traced if r.name == ""), None)
    if root is not None:  # the whole model traced: it is the only region
        return _state_bytes(root.graph_module)
    prefixes = tuple(f"{r.name}." for r in traced)
    untouched = (t for k, t in model.state_dict().items() if not k.startswith(prefixes))
    return _nbytes(untouched) + sum(_state_bytes(r.graph_module) for r in traced)


def _macs(module: nn.Module, rec: CallRecord, batch: int) -> int:
    if rec.out_shape is None:
        return 0
    out = math.prod(rec.out_shape) // max(batch, 1)
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:  # every input element meets every kernel tap once
            inp = math.prod(rec.in_shape or ()) // max(batch, 1)
            return inp * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return out * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return out * module.in_features


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
        is_shortcut=graph_shortcut or _shortcut_by_name(name),
    )


# ---------------------------------------------------------------------------- the plan
def _first_weight_layer(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return module
    return None


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None


def _fixed_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The image size a model is built for, where it has one (ViT/Swin/... patch embedding)."""
    patch_embed = getattr(model, "patch_embed", None)
    if isinstance(patch_embed, nn.Module) and not getattr(patch_embed, "dynamic_img_size", False):
        size = _pair(getattr(patch_embed, "img_size", None))
        if size is not None:
            return size
    return _pair(getattr(model, "img_size", None))


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """The per-sample input shape of ``model``, read from the model itself.

    Channels come from the first conv layer (the stem or the patch embedding), so
    ``timm.create_model(..., in_chans=1)`` gives 1; the spatial size is the patch embedding's
    fixed image size when it has one (``img_size=...``), else timm's
    ``pretrained_cfg['input_size']``, else 224 x 224. A model whose first layer is a linear
    takes timm's input size if it has one (a linear patch embedding), else ``in_features``.

    Raises:
        BinarizeError: the model has no conv or linear layer to read the input from.
    """
    first = _first_weight_layer(model)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    cfg_size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if first is None:
        if cfg_size:
            return tuple(int(d) for d in cfg_size)
        raise BinarizeError(
            f"{type(model).__name__} has no conv or linear layer and no "
            "pretrained_cfg['input_size'] to build an example input from; pass "
            "example_inputs=(torch.randn(1, C, H, W),) with the shape your model expects"
        )
    if isinstance(first, nn.Linear):  # an MLP, or a linear patch embedding of image models
        if cfg_size and len(cfg_size) == 3:
            return tuple(int(d) for d in cfg_size)
        return (first.in_features,)
    channels = first.in_channels
    spatial = len(first.kernel_size)
    if spatial != 2:
        return (channels, *([32] * spatial))  # Conv1d/Conv3d models: a small example
    size = _fixed_image_size(model)
    if size is None and cfg_size and len(cfg_size) == 3:
        size = (int(cfg_size[1]), int(cfg_size[2]))
    return (channels, *(size or DEFAULT_IMAGE_SIZE))


def default_example_inputs(model: nn.Module, batch: int = 1) -> tuple[torch.Tensor]:
    """A seeded random batch of :func:`infer_input_shape`, on the model's device and dtype.

    One sample is enough: the eager pass runs in eval mode and only records shapes (MACs are
    counted per sample), and it is most of the time :func:`annotate` takes.
    """
    shape = infer_input_shape(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *shape), generator=gen).to(device=device, dtype=dtype)
    return (x,)


def check_not_binarized(model: nn.Module) -> None:
    """Raise if ``model`` already contains binary layers."""
    for name, module in model.named_modules():
        if isinstance(module, BinaryLayer):
            raise BinarizeError(
                f"the model is already binarized ({name or 'the root'} is a "
                f"{type(module).__name__}); binarize the float model instead (the binarized "
                "model keeps it as its teacher)"
            )


def annotate(model: nn.Module, recipe: Recipe, example_inputs: Sequence[Any] | None = None) -> Plan:
    """Trace, run once and decide every layer of ``model`` under ``recipe``.

    The model is not modified (its train/eval modes are restored after the eager pass).
    """
    check_not_binarized(model)
    if example_inputs is None:
        example_inputs = default_example_inputs(model)
    elif isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    first_input = _first_tensor(list(example_inputs))
    batch = int(first_input.shape[0]) if first_input is not None and first_input.dim() else 1

    regions = trace_regions(model)
    traced = [r for r in regions if r.graph_module is not None]
    records, captured = record_calls(model, example_inputs, {r.name: r.module for r in traced})

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
    last_names = _classifier_names(model)
    binarized: set[str] = set()
    for rec in compute:
        module, name = rec.module, rec.name
        located = nodes.get(name)
        handled = "graph" if located else "module"
        base = {
            "name": name,
            "type_name": type(module).__name__,
            "kind": "conv" if isinstance(module, nn.Conv2d) else "linear",
            "params": _params(module),
            "weight_numel": module.weight.numel(),
            "out_channels": module.weight.shape[0],
            "state_bytes": _state_bytes(module),
            "bias_bytes": _nbytes([module.bias]) if module.bias is not None else 0,
        }
        if rec.calls == 0:
            entries.append(
                Entry(**base, decision="left alone", rule="-", handled_by="none",
                      reason="never called as a module in the forward pass (its weights are "
                      "used functionally or it is unused)")
            )  # fmt: skip
            continue
        unknown = unsupported_reason(module)
        if unknown is not None:
            entries.append(
                Entry(**base, decision="float", rule="unsupported", reason=unknown,
                      handled_by="none", macs=_macs(module, rec, batch))
            )  # fmt: skip
            continue
        graph_shortcut = located is not None and _is_graph_shortcut(
            located[0].graph_module, located[1]
        )
        info = _layer_info(name, module, rec, first, last_names, last_order, graph_shortcut)
        decision = recipe.decide(info)
        macs = _macs(module, rec, batch)
        if decision.action == "binarize":
            binarized.add(name)
            entries.append(
                Entry(**base, decision="binarize", rule=decision.rule, reason=decision.reason,
                      handled_by=handled, macs=macs, method=decision.method,
                      options=dict(decision.options), region=located[0].name if located else None,
                      node=located[1] if located else None)
            )  # fmt: skip
        else:
            entries.append(
                Entry(**base, decision="float", rule=decision.rule, reason=decision.reason,
                      handled_by="none", macs=macs)
            )  # fmt: skip

    entries += _unsupported_layers(records, batch)
    entries += _plan_activations(recipe, records, sites, traced, binarized, captured)
    if recipe.shortcuts.bireal:
        entries += _plan_shortcuts(entries, records)
    entries = _in_execution_order(entries, records)
    float_params = sum(p.numel() for p in model.parameters())
    float_bytes = _state_bytes(model)
    kept_bytes = _kept_bytes(model, regions)
    input_shape = tuple(first_input.shape[1:]) if first_input is not None else None
    return Plan(recipe, regions, entries, float_params, float_bytes, kept_bytes, batch, input_shape)


def _unsupported_layers(records: dict[str, CallRecord], batch: int) -> list[Entry]:
    """Weight layers no binary layer covers (Conv1d, Conv3d, transposed convs): kept float."""
    entries = []
    for name, rec in records.items():
        module = rec.module
        if not isinstance(module, UNSUPPORTED_LAYER_TYPES):
            continue
        kind = type(module).__name__
        entries.append(
            Entry(name=name, type_name=kind, kind="conv", decision="float", rule="unsupported",
                  handled_by="none", macs=_macs(module, rec, batch) if rec.calls else 0,
                  params=_params(module), reason=f"{kind} is not supported by autobin's binary "
                  "layers (Conv2d and Linear only): kept float")
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
            found, boundary = _upstream_compute(region.graph_module, src)
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
        base = {"name": name, "type_name": type(rec.module).__name__, "kind": "activation",
                "state_bytes": _state_bytes(rec.module)}  # fmt: skip
        if rec.calls == 0:
            entries.append(Entry(**base, decision="left alone", rule="-", handled_by="none",
                                 reason="never called in the forward pass"))  # fmt: skip
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
            Entry(**base, decision="maxout" if replace else "keep", rule="activations",
                  reason=reason, handled_by=("graph" if located else "module") if replace
                  else "none", channels=channels, channel_dim=dim,
                  region=region.name if region else None, node=node)
        )  # fmt: skip

    # functional activations (F.relu, torch.relu, x.relu(), timm's swish, ...)
    for region in traced:
        gm = region.graph_module
        candidates = [n for n in gm.graph.nodes if _functional_kind(n) is not None]
        if not candidates:
            continue
        shapes_ok = _propagate_shapes(region, captured)
        for node in candidates:
            kind = _functional_kind(node)
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
                Entry(name=_join(region.name, node.name), type_name=_call_name(node),
                      kind="activation", decision="maxout" if replace else "keep",
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
    return Entry(
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


def _call_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return f"{getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', '?')}"


def _propagate_shapes(region: Region, captured: dict[str, tuple]) -> bool:
    inputs = captured.get(region.name)
    if inputs is None or inputs[1]:
        return False
    gm = region.graph_module
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs[0])
        return True
    except Exception:  # a graph that runs eagerly but not in the interpreter: no shapes
        return False
    finally:
        for m, mode in modes.items():
            m.training = mode


def _plan_shortcuts(entries: list[Entry], records: dict[str, CallRecord]) -> list[Entry]:
    """Bi-Real shortcuts around binarized convs (+ their norm) whose shapes match."""
    out: list[Entry] = []
    for e in entries:
        if e.decision != "binarize" or e.kind != "conv":
            continue
        rec = records[e.name]
        # the rewrite inserts an add node into the graph (no module): the report says so
        base = {"name": f"{e.name}+shortcut", "type_name": "operator.add", "kind": "shortcut"}
        if rec.in_shape is None or rec.in_shape != rec.out_shape:
            continue  # shapes differ (stride or channels): no identity shortcut, by design
        if e.node is None:
            out.append(Entry(**base, decision="left alone", rule="shortcuts", handled_by="none",
                             reason="conv is inside an untraced/leaf module; a shortcut needs "
                             "the graph"))  # fmt: skip
            continue
        out.append(Entry(**base, decision="shortcut", rule="shortcuts", handled_by="graph",
                         reason="Bi-Real identity shortcut (an add node after the conv's norm): "
                         "input and output shapes match",
                         region=e.region, node=e.node))  # fmt: skip
    return out
