"""End to end: binarized timm resnet18 (recipe adabin) deployed vs float, with a per-layer table.

Builds timm ``resnet18`` (random weights, 1000 classes, 224x224), binarizes it with recipe
``adabin`` and deploys it; times the float model, the fake-quantized model and the deployed
model on the same channels-last input, round robin in one process, and prints the per-layer
table of ``autobin bench`` with where the deployed model's time goes (packed layers and their
input packing, float stem/downsample/classifier convs, other modules, glue outside modules).

Goals (issue 18), at batch 1 and 8 with 1 and 2 threads: deployed >= 8x float32 and >= 4x the
float model's best CPU configuration (float32 NCHW / channels-last or bfloat16 channels-last,
whichever is fastest here; torch.compile is not tried: compiling takes minutes on a small
machine). On a busy machine use ``--threads 1 --clock thread``.

Run: ``.venv/bin/python benchmarks/deploy_end_to_end.py [--threads 2 1] [--batch 1 8]
[--reps 30] [--clock thread] [--float-parts auto]`` (each run is ``autobin bench resnet18
--recipe adabin --threads T --batch B``).
"""

from __future__ import annotations

import argparse

import torch

from autobin.deploy.bench import bench_timm

GOAL_FLOAT32 = 8.0
GOAL_BEST = 4.0


def add_timing_options(
    parser: argparse.ArgumentParser, *, threads: list[int], batch: list[int], reps: int
) -> None:
    """The options this benchmark and ``deploy_detector.py`` share (their defaults differ)."""
    parser.add_argument("--threads", type=int, nargs="+", default=threads)
    parser.add_argument("--batch", type=int, nargs="+", default=batch)
    parser.add_argument(
        "--float-parts", default="auto", choices=["auto", "fp32", "fp32-kernel", "int8", "bf16"]
    )
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument(
        "--clock", choices=["wall", "thread"], default="wall",
        help="'thread': CPU time of the calling thread (with --threads 1 only)",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--recipe", default="adabin")
    add_timing_options(parser, threads=[2, 1], batch=[1, 8], reps=30)
    args = parser.parse_args()
    summary = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            result = bench_timm(
                args.arch, recipe=args.recipe, batch=batch, reps=args.reps, clock=args.clock,
                float_parts=args.float_parts,
            )  # fmt: skip
            print(result.table(), "\n")
            summary.append(result.goal_line(GOAL_FLOAT32, GOAL_BEST))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
