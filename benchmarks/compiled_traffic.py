"""Memory traffic of the compiled training step: the binary student against the float model.

A device-free view of the GPU goal of issue 11. On a GPU, a compiled resnet18 step is library
kernels (convolutions, the classifier's matmul) plus the kernels torch.compile generates for
everything else (BatchNorm, activations, binarizers, Maxout, their backward), and those
generated kernels are memory-bound: their time follows the bytes they read and write. This
script compiles one forward + backward of each model with inductor's own accounting switched
on (``inductor_metrics``: the bytes each scheduled kernel reads and writes) and prints, per
image and side by side, the traffic of the generated kernels and of the library kernels, for
the forward and the backward graph. Two batch sizes separate the per-image traffic (activations)
from the fixed part (weights: casts, the weight binarizers).

    .venv/bin/python benchmarks/compiled_traffic.py                     # resnet18, 224x224, bf16
    .venv/bin/python benchmarks/compiled_traffic.py --variants adabin bnn --layout nchw

What it is not: a time. It counts what inductor's scheduler decided for the backend it ran on
(the C++ backend on a CPU); the GPU backend (Triton) fuses by the same scheduler but with its
own rules, so on a CPU the ratio is an estimate for the GPU; ``--device cuda`` counts the
Triton kernels themselves (``benchmarks/gpu_check.sh`` runs it). Compilation is uncached here
(every run compiles), so a run takes about two minutes on a CPU.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import timm
import torch
import torch._functorch.config as functorch_config
import torch._inductor.compile_fx  # creates the metrics logger that is silenced below
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from torch._inductor import metrics
from torch._inductor.scheduler import ExternKernelSchedulerNode

import autobin

PARTS = ("fwd generated", "bwd generated", "fwd library", "bwd library")


@contextmanager
def inductor_accounting() -> Iterator[None]:
    """Inductor records every kernel's bytes (its ``inductor_metrics`` log, silenced here) and
    compiles afresh (a cached graph would skip the accounting)."""
    log = logging.getLogger("torch._inductor.compile_fx.__inductor_metrics")
    propagate = log.propagate
    torch._logging.set_logs(inductor_metrics=True)
    log.propagate = False  # the records are read from torch._inductor.metrics instead
    try:
        with (
            inductor_config.patch(fx_graph_cache=False),
            functorch_config.patch(enable_autograd_cache=False),
        ):
            yield
    finally:
        log.propagate = propagate
        torch._logging.set_logs()


def step_traffic(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None):
    """Bytes and kernel counts of one compiled forward + backward, by part (see ``PARTS``)."""
    y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    torch._dynamo.reset()
    metrics.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.autocast(x.device.type, amp, enabled=amp is not None):
        loss = F.cross_entropy(compiled(x), y)
    n_forward = len(metrics.nodes_num_elem)
    loss.backward()
    if not metrics.nodes_num_elem:
        raise RuntimeError("inductor recorded no kernels: its metrics log did not switch on")
    traffic, kernels = Counter(), Counter()
    for i, (node, _) in enumerate(metrics.nodes_num_elem):
        graph = "fwd" if i < n_forward else "bwd"
        kind = "library" if isinstance(node, ExternKernelSchedulerNode) else "generated"
        traffic[f"{graph} {kind}"] += node.get_read_write_buffers_sizes()
        kernels[f"{graph} {kind}"] += 1
    return traffic, kernels


def per_image(small: Counter, large: Counter, b_small: int, b_large: int):
    """``(per image, fixed)`` bytes of each part from the traffic at two batch sizes."""
    slope = {p: (large[p] - small[p]) / (b_large - b_small) for p in PARTS}
    return slope, {p: small[p] - b_small * slope[p] for p in PARTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, nargs=3, default=[3, 224, 224])
    ap.add_argument("--batches", type=int, nargs=2, default=[2, 4], metavar=("SMALL", "LARGE"))
    ap.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last")
    ap.add_argument("--amp", choices=["bf16", "none"], default="bf16")
    ap.add_argument("--variants", nargs="+", default=["adabin"], help="recipes to compare")
    ap.add_argument("--device", default="cpu", help="cuda: the GPU backend's (Triton) kernels")
    args = ap.parse_args()
    b_small, b_large = args.batches
    if not 0 < b_small < b_large:
        ap.error(f"--batches needs two sizes, small then larger; got {b_small} {b_large}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: this machine has no CUDA device; leave --device out for the CPU")
    amp = torch.bfloat16 if args.amp == "bf16" else None
    layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    device = torch.device(args.device)
    float_model = timm.create_model(args.arch, num_classes=10, in_chans=args.input_size[0])
    float_model.to(device)
    example = (torch.zeros(2, *args.input_size, device=device),)
    models = {"float": float_model}
    for recipe in args.variants:
        models[recipe] = autobin.binarize(float_model, recipe, example_inputs=example)
    backend = f"Triton, {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "C++"
    print(f"{args.arch}, input {args.input_size}, {args.layout}, amp {args.amp}, "
          f"torch {torch.__version__}, inductor {backend} backend")  # fmt: skip
    print("MiB per image moved by the compiled step's kernels (fixed part, weights, in brackets)")
    print(f"{'':10s}" + "".join(f"{p:>22s}" for p in PARTS) + f"{'kernels fwd+bwd':>18s}")
    rows = {}
    with inductor_accounting():
        for name, model in models.items():
            model.train().to(memory_format=layout)
            at = {}
            for b in (b_small, b_large):
                x = torch.randn(b, *args.input_size, device=device)
                x = x.contiguous(memory_format=layout)
                at[b] = step_traffic(model, x, amp)
            slope, fixed = per_image(at[b_small][0], at[b_large][0], b_small, b_large)
            rows[name] = slope
            kernels = at[b_large][1]
            cells = "".join(f"{slope[p] / 2**20:12.2f} [{fixed[p] / 2**20:6.1f}]" for p in PARTS)
            n_fwd = kernels["fwd generated"] + kernels["fwd library"]
            n_bwd = kernels["bwd generated"] + kernels["bwd library"]
            print(f"{name:10s}{cells}{n_fwd:>10d}+{n_bwd:<7d}", flush=True)
    base = rows["float"]
    generated = ("fwd generated", "bwd generated")
    for name, slope in rows.items():
        if name == "float":
            continue
        ratios = "".join(f"{slope[p] / base[p]:21.2f}x" for p in PARTS)
        gen = sum(slope[p] for p in generated) / sum(base[p] for p in generated)
        print(f"{name + '/float':10s}{ratios}   generated fwd+bwd {gen:.2f}x")


if __name__ == "__main__":
    main()
