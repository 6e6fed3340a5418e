"""The eager forward pass behind annotate, and the sizes measured from it.

:func:`record_calls` runs a model once (eval mode, no gradients, modes restored afterwards)
with hooks on every compute layer, unsupported weight layer and activation; a
:class:`CallRecord` keeps what each one saw: input/output shapes, execution order, the last
compute layer before it and how often it ran. MACs come from those shapes; parameter counts and
state bytes from the modules themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import BinarizeError
from ..module_tools import eval_mode
from .tracer import Region, activation_kind, is_compute_layer

UNSUPPORTED_LAYER_TYPES = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""Weight layers the binary layers do not cover: listed in the report, kept float."""


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
    returned: bool = False  # its output is one of the tensors the model returned, unchanged
    calls: int = 0


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) tuple, list or dict of outputs."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def first_tensor(value: Any) -> torch.Tensor | None:
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
    outputs: dict[int, tuple[CallRecord, torch.Tensor]] = {}  # compute outputs, kept alive
    handles = []
    seen: set[int] = set()
    model_inputs = [t for t in example_inputs if isinstance(t, torch.Tensor)]

    def make_hook(rec: CallRecord, compute: bool):
        def hook(_mod, args, output):
            rec.calls += 1
            x, y = first_tensor(args), first_tensor(output)
            rec.in_shape_seq.append(tuple(x.shape) if x is not None else None)
            if x is not None:
                rec.in_shapes.add(tuple(x.shape))
                rec.takes_model_input |= any(x is t for t in model_inputs)
            if compute and y is not None and rec.calls > 1:
                outputs[id(y)] = (rec, y)
            if rec.calls > 1:
                return
            rec.in_shape = tuple(x.shape) if x is not None else None
            rec.out_shape = tuple(y.shape) if y is not None else None
            rec.prev_compute = state["last_compute"]
            rec.seq = state["seq"]
            state["seq"] += 1
            if compute:
                if y is not None:
                    outputs[id(y)] = (rec, y)
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
        try:
            with eval_mode(model), torch.no_grad():
                result = model(*example_inputs)
        except Exception as exc:
            raise BinarizeError(_forward_failed(example_inputs, exc)) from exc
        for tensor in tensors_in(result):
            if id(tensor) in outputs and outputs[id(tensor)][1] is tensor:
                outputs[id(tensor)][0].returned = True
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


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def state_bytes_of(module: nn.Module) -> int:
    """Bytes of everything ``module`` saves (its whole subtree is dropped when it is replaced)."""
    return tensor_bytes(module.state_dict().values())


def kept_state_bytes(model: nn.Module, regions: list[Region]) -> int:
    """State bytes of ``model`` once its traced regions are installed as GraphModules.

    A GraphModule keeps only the modules and attributes its graph uses, so the rewritten model
    can save less than the float model (a head that forward never calls, for example).
    """
    traced = [r for r in regions if r.graph_module is not None]
    root = next((r for r in traced if r.name == ""), None)
    if root is not None:  # the whole model traced: it is the only region
        return state_bytes_of(root.graph_module)
    prefixes = tuple(f"{r.name}." for r in traced)
    untouched = (t for k, t in model.state_dict().items() if not k.startswith(prefixes))
    return tensor_bytes(untouched) + sum(state_bytes_of(r.graph_module) for r in traced)


def count_macs(module: nn.Module, rec: CallRecord, batch: int) -> int:
    if rec.out_shape is None:
        return 0
    out = math.prod(rec.out_shape) // max(batch, 1)
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:  # every input element meets every kernel tap once
            inp = math.prod(rec.in_shape or ()) // max(batch, 1)
            return inp * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return out * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return out * module.in_features
