"""Training step time (and GPU memory) of binary models relative to the float model, side by side.

Each step is forward + backward + Adam step on one fixed batch; models are interleaved over the
repeats so machine noise hits all of them alike, and the median is reported. Every model keeps
its own optimizer (its Adam state exists before timing starts).

    .venv/bin/python benchmarks/step_time.py                       # mnist5k-sized, CPU
    .venv/bin/python benchmarks/step_time.py --device cuda --amp bf16 --input-size 3 224 224 \\
        --batch 256 --layouts nchw channels_last --modes eager compile --variants adabin
    .venv/bin/python benchmarks/step_time.py --arch resnet20_cifar --input-size 3 32 32 \\
        --batch 128 --variants adabin-reference              # the paper's CIFAR models too

It prints images/s and the bytes the step keeps for backward (the storages autograd saves,
counted once each, parameters excluded, on any device: the activation memory the layer design
decides); on CUDA
also the step's peak memory: the most memory allocated during one step beyond what was
allocated before it (activations, gradients, temporaries), plus the model's own parameters,
gradients and Adam state. ``--layouts``/``--modes`` run every
combination in one process; the closing lines compare each binary model's best configuration
with the float model's best (the goal of issue 11: step time <= 1.25x, peak memory <= 1.2x).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn.functional as F

import autobin
import autobin.models  # registers the CIFAR architectures (resnet20_cifar, ...) in timm

VARIANTS = {
    "adabin": ("adabin", "ede"),
    "adabin-reference": ("adabin-reference", None),  # the released code's layers (CIFAR models)
    "adabin-ste": ("adabin", "ste"),
    "bnn": ("bnn", None),
    "xnor": ("xnor", None),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Runner:
    """One model in one configuration, with its own Adam optimizer."""

    name: str
    model: torch.nn.Module
    forward: Any
    optimizer: torch.optim.Optimizer
    channels_last: bool
    amp: torch.dtype | None
    times: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    saved_bytes: int = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Seconds for one training step (forward, backward, Adam step)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        _sync(x.device)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        amp = self.amp
        ctx = torch.autocast(x.device.type, amp) if amp else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(self.forward(x), y)
        loss.backward()
        self.optimizer.step()
        _sync(x.device)
        return time.perf_counter() - start

    def state_bytes(self) -> int:
        """Parameters, gradients and the two Adam moments."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return 4 * sum(p.numel() * p.element_size() for p in params)

    def measure_memory(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Bytes kept for backward (any device) and, on CUDA, the step's peak memory.

        Parameters saved for backward are not counted: they exist anyway (``state_bytes``).
        """
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                storages[ptr] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.step(x, y)
        self.saved_bytes = sum(storages.values())
        if x.device.type != "cuda":
            return
        _sync(x.device)
        before = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        self.step(x, y)
        self.peak_bytes = torch.cuda.max_memory_allocated(x.device) - before + self.state_bytes()


def build_models(arch: str, input_size, num_classes: int, device, variants) -> dict:
    float_model = timm.create_model(arch, num_classes=num_classes, in_chans=input_size[0])
    float_model.to(device)
    example = (torch.zeros(2, *input_size, device=device),)
    models = {"float": float_model}
    for name in variants:
        recipe, estimator = VARIANTS[name]
        model = autobin.binarize(float_model, recipe, example_inputs=example)
        if estimator:
            for m in model.modules():
                if isinstance(m, autobin.nn.BinaryLayer):
                    m.weight_estimator = estimator
        models[name] = model
    return models


def make_runners(models: dict, layout: str, mode: str, amp) -> list[Runner]:
    runners = []
    for name, model in models.items():
        cl = layout == "channels_last"
        model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        model.train()
        forward = torch.compile(model) if mode == "compile" else model
        params = [p for p in model.parameters() if p.requires_grad]
        runners.append(Runner(name, model, forward, torch.optim.Adam(params, lr=1e-4), cl, amp))
    return runners


def measure(runners: list[Runner], x, y, repeats: int, warmup: int) -> None:
    for r in runners:  # warm-up (compilation, cuDNN autotuning, Adam state)
        for _ in range(warmup):
            r.step(x, y)
        r.measure_memory(x, y)
    for _ in range(repeats):
        for r in runners:
            r.times.append(r.step(x, y))


def measure_step_ratios(models: dict, x, y, repeats: int, amp_dtype=None) -> dict:
    """Median step time of each model and its ratio to ``models["float"]`` (eager, NCHW)."""
    runners = make_runners(models, "nchw", "eager", amp_dtype)
    measure(runners, x, y, repeats, warmup=1)
    med = {r.name: statistics.median(r.times) for r in runners}
    return {name: {"ms": 1000 * med[name], "ratio": med[name] / med["float"]} for name in med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, nargs=3, default=[1, 28, 28])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--layouts", nargs="+", choices=["nchw", "channels_last"], default=None)
    ap.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=None)
    ap.add_argument("--channels-last", action="store_true", help="same as --layouts channels_last")
    ap.add_argument("--compile", action="store_true", help="same as --modes compile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layouts = args.layouts or (["channels_last"] if args.channels_last else ["nchw"])
    modes = args.modes or (["compile"] if args.compile else ["eager"])
    device = torch.device(args.device)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    models = build_models(args.arch, args.input_size, 10, device, args.variants)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.arch}, input {args.input_size}, device {device} ({card}), amp {args.amp}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")  # fmt: skip
    for batch in args.batch:
        x = torch.randn(batch, *args.input_size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        best: dict[str, tuple[float, int, int, str]] = {}
        for layout in layouts:
            for mode in modes:
                runners = make_runners(models, layout, mode, amp)
                measure(runners, x, y, args.repeats, args.warmup)
                base = statistics.median(runners[0].times)
                print(f"batch {batch}, {layout}, {mode}:")
                for r in runners:
                    ms = statistics.median(r.times)
                    mem = f"  saved {r.saved_bytes / 2**20:7.1f} MiB"
                    if r.peak_bytes:
                        mem += f"  peak {r.peak_bytes / 2**30:5.2f} GiB"
                    print(f"  {r.name:12s} {1000 * ms:9.2f} ms {batch / ms:9.0f} img/s "
                          f"{ms / base:6.2f}x float{mem}")  # fmt: skip
                    if r.name not in best or ms < best[r.name][0]:
                        best[r.name] = (ms, r.peak_bytes, r.saved_bytes, f"{layout} {mode}")
        if len(layouts) * len(modes) > 1 or device.type == "cuda":
            f_ms, f_mem, f_saved, f_cfg = best["float"]
            print(f"batch {batch}, each model's best configuration vs float's best ({f_cfg}):")
            for name, (ms, mem, saved, cfg) in best.items():
                ratio_mem = f", saved for backward {saved / f_saved:.2f}x"
                ratio_mem += f", peak memory {mem / f_mem:.2f}x" if f_mem else ""
                print(f"  {name:12s} {1000 * ms:9.2f} ms ({cfg}): step {ms / f_ms:.2f}x{ratio_mem}")


if __name__ == "__main__":
    main()
