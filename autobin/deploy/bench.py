"""Side-by-side timings of a float model, its fake-quantized binarization and its deployment.

Used by ``autobin bench`` and ``benchmarks/deploy_end_to_end.py``. All three models run in the
same process on the same input; every number is a median over repetitions.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .build import active_kernel
from .errors import DeployError
from .float_parts import Bf16Conv2d, Fp32Conv2d, Int8Conv2d
from .layers import InferenceMaxout, PackedConv2d, PackedLinear
from .model import DeployedModel, deploy
from .plan import CompiledChain


def median_time(fn: Callable[[], Any], *, reps: int = 10, warmup: int = 2,
                clock: Callable[[], float] = time.perf_counter) -> float:  # fmt: skip
    """Median time of ``fn()`` in seconds over ``reps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(reps):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Modules timed as one layer: childless ones and the deploy modules (whose children, such
    as the original Maxout kept inside an InferenceMaxout, do not run)."""
    whole = (PackedConv2d, PackedLinear, InferenceMaxout, Int8Conv2d, Bf16Conv2d, Fp32Conv2d)
    out: dict[str, nn.Module] = {}
    inside: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, whole):
            inside.append(name)
            out[name] = m
        elif not list(m.children()) and not isinstance(m, nn.Identity):
            out[name] = m
    return out


def layer_times(
    model: nn.Module,
    run: Callable[[], Any],
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median time per leaf module (packed layers count as leaves) over ``reps`` runs."""
    leaves = _leaves(model)
    samples: dict[str, list[float]] = {n: [] for n in leaves}
    starts: dict[str, float] = {}
    hooks = []
    for name, m in leaves.items():
        hooks.append(
            m.register_forward_pre_hook(
                lambda mod, args, name=name: starts.__setitem__(name, clock())
            )
        )
        hooks.append(m.register_forward_hook(
            lambda mod, args, out, name=name: samples[name].append(
                clock() - starts[name])))  # fmt: skip
    try:
        run()
        for s in samples.values():
            s.clear()
        for _ in range(reps):
            run()
    finally:
        for h in hooks:
            h.remove()
    # a module called k times per forward contributes k samples per run
    return {n: statistics.median(s) * len(s) / reps for n, s in samples.items() if s}


@dataclass
class ModelBench:
    """Timings (seconds per forward) of the float, fake-quantized and deployed models."""

    arch: str
    recipe: str
    input_shape: tuple[int, ...]
    threads: int
    kernel: str
    total: dict[str, float] = field(default_factory=dict)
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    packing: float = 0.0
    clock: str = "wall"
    layouts: dict[str, str] = field(default_factory=dict)
    state_bytes: dict[str, int] = field(default_factory=dict)
    chains: dict[str, float] = field(default_factory=dict)
    modules: dict[str, float] = field(default_factory=dict)
    chain_layers: dict[str, list[str]] = field(default_factory=dict)
    float_best: str = ""

    def breakdown(self) -> dict[str, float]:
        """Where the deployed model's time goes: compiled chains (one C++ call each; their
        share by kind from the per-layer run of the same layers), packed layers, float (fp32 or
        int8) compute layers and other modules outside chains, and glue (Python and graph ops
        outside modules)."""
        inside = {n for paths in self.chain_layers.values() for n in paths}
        kinds = {"packed": "packed binary layers", "float": "float conv/linear (fp32)",
                 "int8": "float conv/linear (int8)",
                 "bf16": "float conv/linear (bf16)",
                 "fp32k": "float conv/linear (fp32 kernel)"}  # fmt: skip
        parts: dict[str, float] = {}
        if self.chains:
            parts["compiled chains (one C++ call each)"] = sum(self.chains.values())
            share = {k: 0.0 for k in [*kinds.values(), "other modules"]}
            for name in inside:
                d = self.layers.get(name, {}).get("deployed", 0.0)
                share[kinds.get(self.kinds.get(name, ""), "other modules")] += d
            total_share = sum(share.values()) or 1.0
            for k, v in share.items():
                if v:
                    parts[f"  of which {k}"] = parts[
                        "compiled chains (one C++ call each)"] * v / total_share  # fmt: skip
        outside = {k: 0.0 for k in [*kinds.values(), "other modules"]}
        # modules outside chains, timed in the deployed model itself when it has chains
        timed = self.modules or {n: t.get("deployed", 0.0) for n, t in self.layers.items()}
        for name, t in timed.items():
            if name in inside or name in self.chains:
                continue
            outside[kinds.get(self.kinds.get(name, "other"), "other modules")] += t
        parts.update({k: v for k, v in outside.items() if v or k == "other modules"})
        parts["  input packing (layers not fed packed bits)"] = self.packing
        parts["glue (Python, graph ops outside modules)"] = max(0.0, self.total["deployed"] - sum(
            v for k, v in parts.items() if not k.startswith("  ")))  # fmt: skip
        return parts

    def goal_line(self, goal_float32: float, goal_best: float) -> str:
        """One line: the deployed model's speed-ups over float32 and over the float model's
        best CPU configuration, next to the goals they are held to."""
        tot = self.total
        return (
            f"{self.arch}, batch {self.input_shape[0]}, {self.threads} thread(s): "
            f"{tot['float'] / tot['deployed']:.2f}x float32 (goal {goal_float32}x), "
            f"{tot['float_best'] / tot['deployed']:.2f}x {self.float_best} (goal {goal_best}x); "
            f"deployed {tot['deployed'] * 1e3:.2f} ms, float32 {tot['float'] * 1e3:.2f} ms"
        )

    def table(self) -> str:
        """The per-layer and end-to-end table ``autobin bench`` prints."""
        ms = 1e3
        cols = ("float ms", "fake ms", "deploy ms")
        head = f"{'layer':34s} {'kind':7s} " + " ".join(f"{c:>9s}" for c in cols) + "  x float"
        lines = [
            f"{self.arch} ({self.recipe}), input {tuple(self.input_shape)}, {self.threads} "
            f"thread(s), kernel path {self.kernel}, {self.clock} clock; input layout: float "
            f"{self.layouts.get('float')}, fake {self.layouts.get('fake')} (each the faster), "
            "deployed channels_last",
            head,
            "-" * len(head),
        ]
        for name, t in self.layers.items():
            f, q, d = (t.get(k) for k in ("float", "fake", "deployed"))
            ratio = f"{f / d:8.1f}" if f and d else f"{'':8s}"
            cells = " ".join(f"{v * ms:9.3f}" if v is not None else f"{'-':>9s}" for v in (f, q, d))
            lines.append(f"{name[:34]:34s} {self.kinds.get(name, ''):7s} {cells} {ratio}")
        lines.append("-" * len(head))
        tot = self.total
        lines.append(
            f"{'end to end':34s} {'':7s} {tot['float'] * ms:9.3f} {tot['fake'] * ms:9.3f} "
            f"{tot['deployed'] * ms:9.3f} {tot['float'] / tot['deployed']:8.1f}"
        )
        lines.append(
            f"deployed vs float32: {tot['float'] / tot['deployed']:.2f}x faster; vs the float "
            f"model's best CPU configuration ({self.float_best}, {tot['float_best'] * ms:.3f} "
            f"ms): {tot['float_best'] / tot['deployed']:.2f}x; vs fake-quantized: "
            f"{tot['fake'] / tot['deployed']:.2f}x"
        )
        for name, t in self.chains.items():
            lines.append(
                f"{name}: {len(self.chain_layers[name])} layers in one C++ call, "
                f"{t * ms:.3f} ms (per-layer deploy ms above: the same layers called one by one)"
            )
        lines.append("deployed time by part:")
        for k, v in self.breakdown().items():
            lines.append(f"  {k:34s} {v * ms:9.3f} ms  {100 * v / tot['deployed']:5.1f} %")
        sb = self.state_bytes
        lines.append(
            f"parameter and buffer bytes: float {sb['float']:,}, deployed {sb['deployed']:,} "
            f"({sb['float'] / sb['deployed']:.1f}x smaller)"
        )
        return "\n".join(lines)


def _kind(module: nn.Module) -> str:
    from ..nn import BinaryLayer

    if isinstance(module, (PackedConv2d, PackedLinear)):
        return "packed"
    if isinstance(module, Int8Conv2d):
        return "int8"
    if isinstance(module, Bf16Conv2d):
        return "bf16"
    if isinstance(module, Fp32Conv2d):
        return "fp32k"
    if isinstance(module, CompiledChain):
        return "chain"
    if isinstance(module, BinaryLayer):
        return "binary"
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return "float"
    return "other"


def bench_models(
    float_model: nn.Module,
    bnn: nn.Module,
    x: torch.Tensor,
    *,
    arch: str = "",
    recipe: str = "",
    reps: int = 10,
    fast: DeployedModel | None = None,
    layered: DeployedModel | None = None,
    clock: str = "wall",
    float_parts: str = "auto",
) -> ModelBench:
    """Time ``float_model``, ``bnn`` (fake-quantized) and ``deploy(bnn)`` on ``x``.

    All run under ``torch.no_grad()``; the deployed model on channels-last input (its layout),
    the float and fake-quantized models on the faster of NCHW and channels-last; end to end in
    round robin (median of ``reps`` rounds). Per-layer times
    come from forward hooks in separate runs, so they include the hooks' small overhead.
    ``clock="thread"`` measures the calling thread's CPU time instead of wall time (meaningful
    with one thread, where torch and the kernels run on the caller: a busy machine does not
    inflate it). ``fast`` / ``layered``: the deployment to time and its twin without compiled
    chains (per-layer times), when the caller made them (a detector's parts).
    """
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock must be 'wall' or 'thread', got {clock!r}")
    if clock == "thread" and torch.get_num_threads() != 1:
        raise ValueError("clock='thread' measures one thread: call torch.set_num_threads(1)")
    now = time.thread_time if clock == "thread" else time.perf_counter
    float_model, bnn = float_model.eval(), bnn.eval()
    fast = fast if fast is not None else deploy(bnn, float_parts=float_parts)
    parts = fast.summary.float_parts
    # the same deployment without compiled chains: per-layer times of the chained layers
    if layered is None:
        layered = (
            deploy(bnn, float_parts=parts, compile_graph=False)
            if fast.summary.compiled_chains
            else fast
        )
    xl = x.contiguous(memory_format=torch.channels_last)
    xc = x.contiguous()
    best_name, best_model, best_input = _float_best(float_model, xc, xl, now)
    models = {"float": float_model, "fake": bnn, "deployed": fast, "float_best": best_model}
    result = ModelBench(
        arch, recipe, tuple(x.shape), torch.get_num_threads(), active_kernel(), clock=clock,
        float_best=best_name,
    )  # fmt: skip
    with torch.no_grad():
        # the float and fake-quantized models get the faster of NCHW and channels-last
        inputs = {"deployed": xl, "float_best": best_input}
        for key in ("float", "fake"):
            m = models[key]
            t_nchw = median_time(lambda m=m: m(xc), reps=3, clock=now)
            t_cl = median_time(lambda m=m: m(xl), reps=3, clock=now)
            inputs[key] = xc if t_nchw <= t_cl else xl
            result.layouts[key] = "nchw" if t_nchw <= t_cl else "channels_last"
        samples: dict[str, list[float]] = {key: [] for key in models}
        for _ in range(reps):  # round robin: a change of machine load hits all alike
            for key, m in models.items():
                t = now()
                m(inputs[key])
                samples[key].append(now() - t)
        result.total = {key: statistics.median(s) for key, s in samples.items()}
        per_layer = {"float": float_model, "fake": bnn, "deployed": layered}
        for key, m in per_layer.items():
            root = m.model if isinstance(m, DeployedModel) else m
            run = lambda m=m, inp=inputs[key]: m(inp)  # noqa: E731
            for name, t in layer_times(root, run, reps, now).items():
                result.layers.setdefault(name, {})[key] = t
                if key != "float" or name not in result.kinds:
                    result.kinds[name] = _kind(root.get_submodule(name))
        if fast is not layered:
            chains = {n: m for n, m in fast.model.named_modules() if isinstance(m, CompiledChain)}
            times = layer_times(fast.model, lambda: fast(xl), reps, now)
            result.chains = {n: times[n] for n in chains if n in times}
            result.modules = {n: t for n, t in times.items() if n not in chains}
            result.chain_layers = {n: list(m.paths) for n, m in chains.items()}
        result.packing = _packing_time(layered, xl, reps, now)
    result.state_bytes = {
        "float": fast.summary.float_state_bytes,
        "deployed": fast.summary.state_bytes,
    }
    return result


def _float_best(
    model: nn.Module, xc: torch.Tensor, xl: torch.Tensor, clock: Callable[[], float]
) -> tuple[str, Callable[[torch.Tensor], Any], torch.Tensor]:
    """The float model's fastest CPU configuration here: float32 NCHW or channels-last, or
    bfloat16 channels-last (the input cast included in its time)."""
    bf16 = copy.deepcopy(model).to(torch.bfloat16).to(memory_format=torch.channels_last)
    configs = {
        "float32 nchw": (model, xc),
        "float32 channels_last": (copy.deepcopy(model).to(memory_format=torch.channels_last), xl),
        "bfloat16 channels_last": (lambda t: bf16(t.to(torch.bfloat16)), xl),
    }
    with torch.no_grad():
        times = {k: median_time(lambda f=f, t=t: f(t), reps=3, clock=clock)
                 for k, (f, t) in configs.items()}  # fmt: skip
    name = min(times, key=times.__getitem__)
    return (name, *configs[name])


def _packing_time(
    fast: DeployedModel, x: torch.Tensor, reps: int, clock: Callable[[], float]
) -> float:
    """Total time the packed layers spend binarizing and bit-packing their inputs (those whose
    producer does not hand them packed bits already)."""
    path = active_kernel()
    if path == "reference":
        return 0.0
    prepacked = set(fast.summary.packs_next.values())
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: inputs.__setitem__(n, a[0]))
        for n, m in fast.model.named_modules()
        if isinstance(m, PackedConv2d) and n not in prepacked
    ]
    try:
        fast(x)
    finally:
        for h in hooks:
            h.remove()
    total = 0.0
    for name, inp in inputs.items():
        layer = fast.model.get_submodule(name)
        total += median_time(
            lambda layer=layer, inp=inp: layer.pack_input(inp, path), reps=reps, clock=clock
        )
    return total


def bench_timm(
    arch: str,
    *,
    recipe: str = "adabin",
    batch: int = 1,
    input_size: tuple[int, int] | None = None,
    reps: int = 10,
    clock: str = "wall",
    float_parts: str = "auto",
    **create_kwargs: Any,
) -> ModelBench:
    """Build ``arch`` with timm (random weights), binarize it with ``recipe``, bench all three."""
    import timm

    from .. import models  # noqa: F401  registers autobin's CIFAR architectures in timm
    from ..graph import NothingBinarizedWarning, binarize, family_of
    from ..nn import BinaryLayer

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **create_kwargs).eval()
    chans, *size = family_of(model).input_shape(model)
    if input_size is not None:
        size = list(input_size)
    x = torch.randn(batch, chans, *size)
    with warnings.catch_warnings():  # nothing binarized is refused below, in one line
        warnings.simplefilter("ignore", NothingBinarizedWarning)
        bnn = binarize(model, recipe, example_inputs=(x[:1].repeat(2, 1, 1, 1),)).eval()
    if not any(isinstance(m, BinaryLayer) for m in bnn.modules()):
        raise DeployError(
            f"recipe {recipe!r} binarizes no layer of {arch}: there is nothing to deploy or "
            "time; choose a recipe that binarizes layers (see `autobin explain`)"
        )
    return bench_models(model, bnn, x, arch=arch, recipe=str(recipe), reps=reps, clock=clock,
                        float_parts=float_parts)  # fmt: skip


def single_image_latency(
    float_model: nn.Module, deployed: nn.Module, image: torch.Tensor, *, reps: int = 30
) -> tuple[float, float]:
    """Median wall-clock seconds of a one-image forward of ``float_model`` (the faster of NCHW
    and channels-last input) and of ``deployed``, alternated in one loop (``make demo``)."""
    x = image if image.dim() == 4 else image.unsqueeze(0)
    xc, xl = x.contiguous(), x.contiguous(memory_format=torch.channels_last)
    float_model = float_model.eval()
    with torch.no_grad():
        faster = min((xc, xl), key=lambda t: median_time(lambda: float_model(t), reps=3))
        samples: dict[str, list[float]] = {"float": [], "deployed": []}
        for fn in (lambda: float_model(faster), lambda: deployed(xl)):
            fn()  # warm up (the deployed model builds its plan on the first call)
        for _ in range(reps):
            for key, fn in (
                ("float", lambda: float_model(faster)),
                ("deployed", lambda: deployed(xl)),
            ):
                t = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - t)
    return statistics.median(samples["float"]), statistics.median(samples["deployed"])


__all__ = [
    "ModelBench",
    "bench_models",
    "bench_timm",
    "layer_times",
    "median_time",
    "single_image_latency",
]
