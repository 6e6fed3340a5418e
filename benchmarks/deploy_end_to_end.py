"""End to end: binarized timm resnet18 (recipe adabin) deployed vs float, with a per-layer table.

Builds timm ``resnet18`` (random weights, 1000 classes, 224x224), binarizes it with recipe
``adabin`` and deploys it; times the float model, the fake-quantized model and the deployed
model on the same channels-last input, round robin in one process, and prints the per-layer
table of ``autobin bench`` with where the deployed model's time goes (packed layers and their
input packing, float stem/downsample/classifier convs, other modules, glue outside modules).

Goal (issue 10): deployed >= 4x faster than float32 at batch 1 with 2 threads.

Run: ``.venv/bin/python benchmarks/deploy_end_to_end.py [--threads 2] [--batch 1] [--reps 30]``
(the same as ``autobin bench resnet18 --recipe adabin --threads 2``).
"""

from __future__ import annotations

import argparse

import torch

from autobin.deploy.bench import bench_timm

GOAL = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--recipe", default="adabin")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument(
        "--clock", choices=["wall", "thread"], default="wall",
        help="'thread': CPU time of the calling thread (with --threads 1 only)",
    )  # fmt: skip
    args = parser.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        result = bench_timm(
            args.arch, recipe=args.recipe, batch=args.batch, reps=args.reps, clock=args.clock
        )
        print(result.table())
        speedup = result.total["float"] / result.total["deployed"]
        print(f"goal >= {GOAL}x at batch 1, 2 threads: {speedup:.2f}x ({threads} thread(s))\n")


if __name__ == "__main__":
    main()
