"""A binarized detector's backbone + neck, deployed vs float, side by side in one process.

Builds the detector of an mmdet config (random weights; default: the small SSD of
``configs/mmdet/ssd128_r18_mnist-det-small.py``), binarizes it with the recipe (default
``ssd-adabin``) and deploys it (:func:`autobin.deploy`: in place, still an mmdet detector), then
times its backbone + neck (``extract_feat``, where the binary layers are; the head's
prediction convs are float in both) as ``autobin bench CONFIG`` does: float32 (NCHW or
channels-last), the float part's best CPU configuration (bfloat16 channels-last where faster),
fake-quantized and deployed, round robin, with the per-layer table and where the deployed
time goes.

Goals (issue 18): deployed backbone + neck >= 5x the float detector's in float32 and >= 2.5x
in its best dtype. On a busy machine use ``--threads 1 --clock thread``.

Run: ``.venv/bin/python benchmarks/deploy_detector.py [--config C.py ...] [--recipe R]
[--batch 1 8] [--threads 1] [--reps 20] [--clock thread]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from deploy_end_to_end import add_timing_options

from autobin.integrations.mmdet.bench import bench_detector

ROOT = Path(__file__).resolve().parents[1]
GOAL_FLOAT32 = 5.0
GOAL_BEST = 2.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", nargs="+",
        default=[str(ROOT / "configs" / "mmdet" / "ssd128_r18_mnist-det-small.py")],
    )  # fmt: skip
    parser.add_argument("--recipe", default="ssd-adabin")
    parser.add_argument("--input-size", type=int, nargs=2, default=None)
    add_timing_options(parser, threads=[1], batch=[1], reps=20)
    args = parser.parse_args()
    summary = []
    for config in args.config:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for batch in args.batch:
                result = bench_detector(
                    config, recipe=args.recipe, batch=batch, reps=args.reps, clock=args.clock,
                    input_size=args.input_size, float_parts=args.float_parts,
                )  # fmt: skip
                print(result.table(), "\n")
                summary.append(result.goal_line(GOAL_FLOAT32, GOAL_BEST))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
