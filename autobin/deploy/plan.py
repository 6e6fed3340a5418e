"""Compiled chains: consecutive deployed layers run by one C++ call, no Python between them.

:func:`compile_chains` finds, in the fx graphs of a deployed model, runs of consecutive calls of
packed convs (:class:`~.layers.PackedConv2d`), int8, bf16 and float32-kernel convs
(:mod:`~.float_parts`) and max pools that take one value from outside, and at most one more
used only as a fused shortcut operand, and give one value back (in a ResNet: from the stem to
the last block; a run whose inner values are also used elsewhere, such as a detector backbone's
feature maps, is cut after each of them), and replaces each run by a :class:`CompiledChain`. A
layer the chains cannot run whose value is only a shortcut operand of chained layers (a torch
float32 downsample conv) is moved up to just after its inputs, so it runs in torch before the
chain and hands its value over as the chain's second input: a ResNet stage with such a
downsample is one chain. Its forward builds, once per input shape, a plan: one ``PlanOp``
record per layer (geometry, the layer's buffer addresses, activation slots in an arena, each
slot reused once no later layer reads it) and runs it with ``autobin_run_plan``. A packed
layer's input packed by its producer's epilogue (a packed conv's, or a float32-kernel conv's)
is handed over inside the arena.

Values are those of the layers called one by one (the same kernel functions); input the
kernels cannot run (another dtype or device, the ``reference`` path) runs the layers one by one.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import torch
from torch import fx, nn

from .build import active_kernel, load_library, path_code
from .errors import DeployError
from .float_parts import Bf16Conv2d, Fp32Conv2d, Int8Conv2d
from .layers import PackedConv2d, refuse_scripting, refuse_tracing
from .plan_op import PlanOp, check_layout

_KINDS = {PackedConv2d: 0, Int8Conv2d: 1, nn.MaxPool2d: 2, Bf16Conv2d: 3, Fp32Conv2d: 4}
_FLOAT_CONVS = (Int8Conv2d, Bf16Conv2d, Fp32Conv2d)
_ALIGN = 64


def _pool_ok(m: nn.Module) -> bool:
    if type(m) is not nn.MaxPool2d or m.ceil_mode or m.return_indices:
        return False
    values = (m.kernel_size, m.stride, m.padding, m.dilation)
    pairs = [(v, v) if isinstance(v, int) else tuple(v) for v in values]
    return all(len(p) == 2 for p in pairs) and pairs[3] == (1, 1)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class CompiledChain(nn.Module):
    """A run of deployed layers executed by one ``autobin_run_plan`` call.

    Attributes:
        paths: the layers' module paths, in order.
    """

    def __init__(self, steps: list[tuple[nn.Module, int, int]], paths: list[str]) -> None:
        """``steps``: ``(module, input step, extra step)`` with step ``-1`` the chain's input,
        ``-3`` its second input and ``-2`` for no extra input (steps refer to earlier steps'
        outputs)."""
        super().__init__()
        self._steps = steps  # the modules stay registered where they are in the model
        self.paths = list(paths)
        self._plans: dict[tuple, tuple[Any, int, tuple[int, ...]]] = {}

    def __prepare_scriptable__(self) -> Any:
        refuse_scripting("CompiledChain")

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles drop the plans (they hold addresses); they are rebuilt on use."""
        state = self.__dict__.copy()
        state["_plans"] = {}
        state.pop("_buffer_tables", None)
        return state

    def _signature(self) -> tuple[int, ...]:
        """Addresses of every buffer the plan points to: a plan is rebuilt when any moved
        (``load_state_dict(assign=True)``, ``share_memory()``, a layout change). Read through
        the modules' own buffer tables (collected once; walking ``buffers()`` on every call
        cost tens of microseconds), so a buffer replaced in its module is seen."""
        tables = self.__dict__.get("_buffer_tables")
        if tables is None:
            tables = [m._buffers for module, _, _ in self._steps for m in module.modules()]
            self._buffer_tables = tables
        return tuple(t.data_ptr() for table in tables for t in table.values() if t is not None)

    def _one_by_one(self, x: torch.Tensor, x2: torch.Tensor | None) -> torch.Tensor:
        values: list[torch.Tensor] = []
        outside = {-1: x, -3: x2}
        for module, src, extra in self._steps:
            inp = outside[src] if src < 0 else values[src]
            if extra == -2:
                values.append(module(inp))
            else:
                values.append(module(inp, outside[extra] if extra < 0 else values[extra]))
        return values[-1]

    def _build(
        self, n: int, c: int, h: int, w: int, second: tuple[int, ...] | None
    ) -> tuple[Any, int, tuple[int, ...]] | None:
        """The plan for an ``(n, c, h, w)`` input (and a second input of shape ``second``, its
        ``(c, h, w)``): PlanOp array, arena bytes, output shape (the forward builds it for one
        image and runs it image by image); None where a layer cannot take its input (the
        layers, called one by one, then say why) or a shortcut operand is not shaped like the
        output it is added to (the layers then broadcast it)."""
        arena = _Arena()
        last_use = self._last_uses()
        owned: list[list[int]] = []  # arena blocks of each step's outputs (float and bits)

        def alloc(nbytes: int) -> int:
            at = arena.take(nbytes)
            owned[-1].append(at)
            return at

        def pack_for(op: PlanOp, oh: int, ow: int, co: int, thr: float, groups: int) -> tuple:
            """Arena slots for the step's output binarized and packed for a packed reader
            (``groups`` groups, threshold ``thr``): ``(act, sa, thr, groups)``."""
            words = n * oh * ow * groups * ((co // groups + 63) // 64)
            op.next_act, op.next_sa = alloc(8 * words), alloc(4 * n * oh * ow * groups)
            return (op.next_act, op.next_sa, thr, groups)

        shapes: list[tuple[int, int, int]] = []
        slots: list[int] = []
        bits: list[tuple[int, int, float, int] | None] = []  # (act, sa, thr, groups) per step
        ops = (PlanOp * len(self._steps))()
        last = len(self._steps) - 1
        for i, (module, src, extra) in enumerate(self._steps):
            ci, hi, wi = (c, h, w) if src == -1 else shapes[src]
            op = ops[i]
            owned.append([])
            if not isinstance(module, nn.MaxPool2d) and ci != module.in_channels:
                return None
            if isinstance(module, PackedConv2d):
                oh, ow = module._output_size(torch.empty(0, 0, hi, wi))
                co = module.out_channels
                if oh <= 0 or ow <= 0 or (module.residual and (oh, ow, co) != (hi, wi, ci)):
                    return None
                if extra != -2 and (second if extra == -3 else shapes[extra]) != (co, oh, ow):
                    return None
                # the layer's own call record (geometry, buffers, fused glue), then the slots
                own = module.call_op(n, hi, wi)
                ctypes.memmove(ctypes.addressof(op), ctypes.addressof(own), ctypes.sizeof(own))
            op.kind = _KINDS[type(module)]
            op.inp = -1 if src == -1 else slots[src]
            op.extra = {-2: -1, -3: -2}[extra] if extra < 0 else slots[extra]
            op.in_act = op.in_sa = op.next_act = op.next_sa = -1
            op.n, op.h, op.w, op.c = n, hi, wi, ci
            if isinstance(module, PackedConv2d):
                if src >= 0 and bits[src] is not None:
                    act, sa, bthr, bgroups = bits[src]  # type: ignore[misc]
                    if bthr == module.threshold and bgroups == module.groups:
                        op.in_act, op.in_sa = act, sa
                produced = None
                if module.next_input is not None and i != last:
                    produced = pack_for(op, oh, ow, co, *module.next_input)
                bits.append(produced)
            elif isinstance(module, _FLOAT_CONVS):
                oh, ow = module._output_size(hi, wi)
                co = module.out_channels
                (op.kh, op.kw), (op.sh, op.sw) = module.kernel_size, module.stride
                op.pt, _, op.pl, _ = module.padding
                op.o, op.op, op.bias = co, module.padded_out, module.bias.data_ptr()
                if isinstance(module, Int8Conv2d):
                    op.wq, op.r4 = module.wq.data_ptr(), module.r4
                    op.sumw, op.wscale = module.sumw.data_ptr(), module.wscale.data_ptr()
                elif isinstance(module, Bf16Conv2d):
                    op.wq, op.r4 = module.wb.data_ptr(), module.r2
                else:
                    op.wq = module.wf.data_ptr()
                if module.maxout is not None:
                    op.gp = module.maxout.gamma_pos.data_ptr()
                    op.gn = module.maxout.gamma_neg.data_ptr()
                produced = None
                reader = self._packed_reader(i) if isinstance(module, Fp32Conv2d) else None
                if reader is not None:
                    # the epilogue binarizes and packs the output for the packed layer reading it
                    op.next_thr, op.next_groups = reader.threshold, reader.groups
                    produced = pack_for(op, oh, ow, co, reader.threshold, reader.groups)
                bits.append(produced)
            else:
                (op.kh, op.kw), (op.sh, op.sw) = _pair(module.kernel_size), _pair(module.stride)
                (op.pt, op.pl), co = _pair(module.padding), ci
                oh = (hi + 2 * op.pt - op.kh) // op.sh + 1
                ow = (wi + 2 * op.pl - op.kw) // op.sw + 1
                if oh <= 0 or ow <= 0 or 2 * op.pt > op.kh or 2 * op.pl > op.kw:
                    return None
                bits.append(None)
            op.oh, op.ow = oh, ow
            shapes.append((co, oh, ow))
            slots.append(-1 if i == last else alloc(4 * n * oh * ow * co))
            op.out = slots[-1]
            # outputs no later step reads go back to the arena (after this step's own outputs
            # were placed: a step never writes over what it reads)
            for j in range(i + 1):
                if last_use[j] == i:
                    for at in owned[j]:
                        arena.give(at)
        co, oh, ow = shapes[-1]
        return ops, arena.size, (n, oh, ow, co)

    def _last_uses(self) -> list[int]:
        """For each step, the last step that reads its output (itself when none does)."""
        last = list(range(len(self._steps)))
        for i, (_, src, extra) in enumerate(self._steps):
            for j in (src, extra):
                if j >= 0:
                    last[j] = max(last[j], i)
        return last

    def _packed_reader(self, i: int) -> PackedConv2d | None:
        """The first packed conv of the chain whose input is step ``i``'s output, if any."""
        for module, src, _ in self._steps[i + 1 :]:
            if src == i and isinstance(module, PackedConv2d):
                return module
        return None

    def forward(self, x: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        """``x2``: the chain's second input (a shortcut operand), where it takes one."""
        refuse_tracing("CompiledChain")
        path = active_kernel()
        if path == "reference" or not _kernel_input(x) or not (x2 is None or _kernel_input(x2)):
            return self._one_by_one(x, x2)
        if x.dim() != 4 or x.shape[0] == 0:
            return self._one_by_one(x, x2)  # the first layer says what is wrong
        if x2 is not None and (x2.dim() != 4 or x2.shape[0] != x.shape[0]):
            return self._one_by_one(x, x2)  # broadcast (or refused) by the layer adding it
        n, c, h, w = x.shape
        second = None if x2 is None else tuple(x2.shape[1:])
        key = (c, h, w, second, self._signature())
        if key not in self._plans:
            check_layout()
            if len(self._plans) > 16:
                self._plans.clear()
            # run image by image: activations stay in cache
            self._plans[key] = self._build(1, c, h, w, second)
        plan = self._plans[key]
        if plan is None:
            return self._one_by_one(x, x2)
        ops, arena, out_shape = plan
        xl = _channels_last(x)
        x2l = None if x2 is None else _channels_last(x2)
        out = torch.empty((n, *out_shape[1:]), dtype=torch.float32)
        status = load_library().autobin_run_plan(
            ops, len(self._steps), arena, xl.data_ptr(), 0 if x2l is None else x2l.data_ptr(),
            out.data_ptr(), path_code(path), torch.get_num_threads(), n, c * h * w,
            0 if x2l is None else x2l[0].numel(), math.prod(out_shape[1:]),
        )  # fmt: skip
        if status != 0:
            raise DeployError("an int8/bf16 layer of a compiled chain lacks its CPU instructions")
        return out.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{len(self.paths)} layers: {self.paths[0]} .. {self.paths[-1]}"


class _Arena:
    """First-fit placement of a plan's activations in one byte arena: a block given back is
    reused by later steps (a chain's working set stays small enough to stay in cache)."""

    def __init__(self) -> None:
        self.size = 0
        self._free: list[tuple[int, int]] = []  # (offset, bytes), sorted, merged
        self._taken: dict[int, int] = {}

    def take(self, nbytes: int) -> int:
        nbytes = max(_ALIGN, (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN)
        for k, (at, size) in enumerate(self._free):
            if size >= nbytes:
                self._free[k : k + 1] = [(at + nbytes, size - nbytes)] if size > nbytes else []
                self._taken[at] = nbytes
                return at
        if self._free and self._free[-1][0] + self._free[-1][1] == self.size:
            at = self._free.pop()[0]  # grow the free block at the end
        else:
            at = self.size
        self.size = at + nbytes
        self._taken[at] = nbytes
        return at

    def give(self, at: int) -> None:
        blocks = sorted([*self._free, (at, self._taken.pop(at))])
        merged: list[tuple[int, int]] = []
        for start, size in blocks:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((start, size))
        self._free = merged


def _kernel_input(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32 and x.device.type == "cpu"


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    xl = x.permute(0, 2, 3, 1)
    return xl if xl.is_contiguous() else xl.contiguous()


def _supported(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op != "call_module" or node.kwargs:
        return False
    m = gm.get_submodule(node.target)
    if isinstance(m, nn.MaxPool2d):
        return _pool_ok(m) and len(node.args) == 1
    if type(m) is PackedConv2d:
        return len(node.args) == (2 if m.adds_extra else 1)
    return type(m) in _FLOAT_CONVS and len(node.args) == 1


def _chain_of(
    run: list[fx.Node],
) -> tuple[tuple[fx.Node, ...], list[tuple[int, int]]] | None:
    """The run's outside inputs (its input, then the one outside shortcut operand if any) and
    each node's (input, extra) step indices, or None when the run's layers take more than one
    outside input, more than one outside shortcut operand, or the run gives any value but its
    last out."""
    index = {node: i for i, node in enumerate(run)}
    inputs = {node.args[0] for node in run if node.args[0] not in index}
    extras = {node.args[1] for node in run if len(node.args) == 2 and node.args[1] not in index}
    if len(inputs) != 1 or len(extras) > 1:
        return None
    for node in run[:-1]:
        if any(user not in index for user in node.users):
            return None
    refs = []
    for node in run:
        src = index.get(node.args[0], -1)
        extra = -2
        if len(node.args) == 2:
            extra = index.get(node.args[1], -3)
        refs.append((src, extra))
    return (*inputs, *extras), refs


def _hoist_shortcut_operands(gm: fx.GraphModule) -> bool:
    """Move each module call the chains cannot run whose every use is as a chainable layer's
    shortcut operand (a float32 downsample conv) up to just after its inputs, so that it no
    longer cuts the run of layers around it. The module runs on the same input, so values are
    unchanged. Returns whether any moved."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    moved = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or _supported(gm, node) or not node.users:
            continue
        if not all(_supported(gm, user) and len(user.args) == 2 and user.args[1] is node
                   and user.args[0] is not node for user in node.users):  # fmt: skip
            continue
        anchors = [*node.all_input_nodes, *placeholders[-1:]]
        if not anchors:
            continue
        after = max(anchors, key=order.__getitem__)
        inputs = set(node.all_input_nodes)
        between, safe = after.next, True
        while between is not node:  # only chainable layers (they change no input) read them
            if inputs & set(between.all_input_nodes) and not _supported(gm, between):
                safe = False
            between = between.next
        if safe and after.next is not node:
            after.append(node)
            moved = True
            order = {n: i for i, n in enumerate(gm.graph.nodes)}
    return moved


def _split_at_outputs(run: list[fx.Node]) -> list[list[fx.Node]]:
    """``run`` cut after every node whose value is also used outside the run (a backbone's
    feature maps returned at several depths): each piece gives one value back."""
    members = set(run)
    pieces: list[list[fx.Node]] = [[]]
    for node in run:
        pieces[-1].append(node)
        if any(user not in members for user in node.users):
            pieces.append([])
    return [piece for piece in pieces if piece]


def compile_chains(root: nn.Module) -> list[list[str]]:
    """Replace every run of two or more chainable layers by a :class:`CompiledChain` (a run
    whose inner values are used outside it is cut after each of them); returns the module
    paths of each chain."""
    chains: list[list[str]] = []
    for prefix, gm in list(root.named_modules()):
        if not isinstance(gm, fx.GraphModule):
            continue
        changed = _hoist_shortcut_operands(gm)
        runs: list[list[fx.Node]] = [[]]
        for node in gm.graph.nodes:
            if _supported(gm, node):
                runs[-1].append(node)
            elif runs[-1]:
                runs.append([])
        for run in [piece for whole in runs for piece in _split_at_outputs(whole)]:
            found = _chain_of(run) if len(run) >= 2 else None
            if found is None:
                continue
            sources, refs = found
            paths = [f"{prefix}.{n.target}" if prefix else str(n.target) for n in run]
            steps = [(gm.get_submodule(n.target), s, e) for n, (s, e) in zip(run, refs)]
            name = f"compiled_chain_{len(chains)}"
            gm.add_submodule(name, CompiledChain(steps, paths))
            with gm.graph.inserting_after(run[-1]):
                call = gm.graph.call_module(name, sources)
            run[-1].replace_all_uses_with(call)
            for node in reversed(run):
                gm.graph.erase_node(node)
            chains.append(paths)
            changed = True
        if changed:
            gm.graph.lint()
            gm.recompile()
    return chains


__all__ = ["CompiledChain", "PlanOp", "compile_chains"]
