"""Packed binary conv vs torch float32 and bfloat16 ``conv2d``, per ResNet-18 3x3 conv shape.

Every 3x3 conv shape of ResNet-18 at 224x224 (56x56x64 through 7x7x512, stride 1 and the
stride-2 first conv of each stage), batch 1 and 8, 1 and 2 threads. Candidates, timed round
robin in one process (so a load change on the machine hits all of them alike), median of the
rounds:

* ``fp32`` / ``bf16``: ``torch.nn.functional.conv2d``, the faster of NCHW and channels-last;
* ``avx512`` / ``avx2`` / ``portable``: :class:`autobin.deploy.PackedConv2d` (AdaBin, BatchNorm
  folded) on channels-last float32 input, each compiled path forced in turn (set once around
  the candidate's timing loop, as a user would); the time includes the layer's Python call,
  binarizing and bit-packing the input and the float epilogue.

Goals (issue 10): on the AVX-512 path >= 10x faster than fp32 and >= 2x faster than bf16; on
the AVX2 path >= 3x faster than fp32. Prints one table per thread count and the geometric mean
of each ratio.

Run: ``.venv/bin/python benchmarks/deploy_kernels.py [--rounds 7] [--paths avx512 avx2]``;
on a busy shared machine ``--threads 1 --clock thread`` times CPU time of the one thread (wall
time then includes other processes' turns).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

from autobin.deploy import KERNEL_PATHS, PackedConv2d, available_kernels, use_kernel
from autobin.nn import AdaBinConv2d

# (in channels, out channels, input size, stride) of ResNet-18's 3x3 convs at 224x224
SHAPES = [
    (64, 64, 56, 1),
    (64, 128, 56, 2),
    (128, 128, 28, 1),
    (128, 256, 28, 2),
    (256, 256, 14, 1),
    (256, 512, 14, 2),
    (512, 512, 7, 1),
]
GOALS = {"avx512": {"fp32": 10.0, "bf16": 2.0}, "avx2": {"fp32": 3.0}}


def _packed_layer(cin: int, cout: int, stride: int) -> PackedConv2d:
    torch.manual_seed(0)
    layer = AdaBinConv2d(cin, cout, 3, stride, 1, bias=False).eval()
    with torch.no_grad():
        layer.act_beta.fill_(0.05)
    norm = torch.nn.BatchNorm2d(cout).eval()
    return PackedConv2d(layer, norm=norm)


def _candidates(cin, cout, size, stride, batch, paths):
    x = torch.randn(batch, cin, size, size)
    xl = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, 3, 3)
    wl = w.contiguous(memory_format=torch.channels_last)
    xb, xbl, wb, wbl = x.bfloat16(), xl.bfloat16(), w.bfloat16(), wl.bfloat16()
    packed = _packed_layer(cin, cout, stride)

    def conv(a, b):
        return lambda: F.conv2d(a, b, stride=stride, padding=1)

    def run_packed():
        packed(xl)

    cands = {
        "fp32 nchw": conv(x, w),
        "fp32 cl": conv(xl, wl),
        "bf16 nchw": conv(xb, wb),
        "bf16 cl": conv(xbl, wbl),
    }
    for p in paths:  # timed with the path forced (_time_round_robin), as a user sets it once
        cands[p] = run_packed
    return cands


def _time_round_robin(cands, rounds: int, clock, min_round: float = 0.02) -> dict[str, float]:
    """Median time per call of each candidate; a candidate named after a kernel path runs with
    that path forced (``use_kernel`` around its timing loop, not inside each call)."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    with torch.no_grad():
        for name, fn in cands.items():  # warm up
            with _path_of(name):
                fn()
                fn()
        for _ in range(rounds):
            for name, fn in cands.items():
                with _path_of(name):
                    n, start = 0, clock()
                    while True:
                        fn()
                        n += 1
                        elapsed = clock() - start
                        if elapsed >= min_round:
                            break
                times[name].append(elapsed / n)
    return {k: statistics.median(v) for k, v in times.items()}


def _path_of(name: str):
    return use_kernel(name) if name in KERNEL_PATHS else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--paths", nargs="+", default=None, help="default: every compiled path")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument(
        "--clock", choices=["wall", "thread"], default="wall",
        help="'thread': CPU time of the calling thread, which a busy shared machine does not "
        "inflate; only with --threads 1 (torch and the kernels then run on that thread)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.clock == "thread" and args.threads != [1]:
        parser.error("--clock thread measures one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    paths = args.paths or [p for p in available_kernels() if p != "reference"]
    print(f"torch {torch.__version__}, kernel paths {paths}, clock {args.clock}")
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        head = f"{'shape (Cin,Cout,HxW,s)':24s} {'N':>2s} {'fp32 ms':>8s} {'bf16 ms':>8s}"
        for p in paths:
            head += f" {p + ' ms':>12s} {'x fp32':>7s} {'x bf16':>7s}"
        print(f"\n{threads} thread(s)\n{head}\n{'-' * len(head)}")
        for batch in args.batches:
            for cin, cout, size, stride in SHAPES:
                cands = _candidates(cin, cout, size, stride, batch, paths)
                t = _time_round_robin(cands, args.rounds, clock)
                fp32 = min(t["fp32 nchw"], t["fp32 cl"])
                bf16 = min(t["bf16 nchw"], t["bf16 cl"])
                row = {"threads": threads, "batch": batch, "shape": [cin, cout, size, stride],
                       "fp32": fp32, "bf16": bf16}  # fmt: skip
                name = f"{cin},{cout},{size}x{size},{stride}"
                line = f"{name:24s} {batch:2d} {fp32 * 1e3:8.3f} {bf16 * 1e3:8.3f}"
                for p in paths:
                    row[p] = t[p]
                    line += f" {t[p] * 1e3:12.3f} {fp32 / t[p]:7.1f} {bf16 / t[p]:7.1f}"
                print(line)
                results.append(row)
    print("\ngeometric means of the speed-ups, and goals:")
    for p in paths:
        for base in ("fp32", "bf16"):
            ratios = [r[base] / r[p] for r in results]
            gmean = math.exp(sum(map(math.log, ratios)) / len(ratios))
            goal = GOALS.get(p, {}).get(base)
            met = sum(r >= goal for r in ratios) if goal else None
            tail = f" (goal >= {goal}x: met in {met}/{len(ratios)} rows)" if goal else ""
            print(
                f"  {p:9s} vs {base}: {gmean:6.2f}x, min {min(ratios):.2f}x, "
                f"max {max(ratios):.2f}x{tail}"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
