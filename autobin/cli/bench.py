"""``autobin bench``: per-layer and end-to-end timings of float, fake-quantized and deployed models.

Heavy imports (timm, the deploy kernels) happen inside the command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``autobin bench`` on the top-level subcommand parser."""
    p = sub.add_parser(
        "bench",
        help="time float vs fake-quantized vs deployed (packed) model, per layer and end to end",
    )
    p.add_argument(
        "arch",
        help="timm architecture name (e.g. resnet18), or an mmdet config file (a detector: its "
        "backbone + neck are timed; needs the [mmdet] extra)",
    )
    p.add_argument(
        "--recipe", default=None,
        help="recipe name or YAML path (default adabin; det-adabin for a detector config)",
    )  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads (default: torch's)"
    )
    p.add_argument(
        "--reps", type=positive_int, default=10, help="timed repetitions (median, default 10)"
    )
    p.add_argument(
        "--input-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
        help="input height and width (default: the model's own, 224x224 for resnet18)",
    )  # fmt: skip
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier outputs")
    p.add_argument("--in-chans", type=positive_int, default=None, help="input channels")
    p.add_argument(
        "--kernel", default=None, help="force a kernel path: avx512, avx2, portable, reference"
    )
    p.add_argument(
        "--clock", choices=["wall", "thread"], default="wall",
        help="'thread': CPU time of the calling thread (only with --threads 1; a busy machine "
        "does not inflate it)",
    )  # fmt: skip
    p.add_argument(
        "--float-parts", choices=["auto", "fp32", "fp32-kernel", "int8", "bf16"],
        default="auto",
        help="the deployed model's float convs: auto (a classifier: int8 stem, bf16 elsewhere, "
        "where the CPU has the instructions; a detector: fp32-kernel), fp32 (torch, exact), "
        "fp32-kernel (float32 in autobin's kernel, fused into compiled chains), int8 or bf16",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the timings as JSON")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table (or JSON)."""
    import contextlib

    import torch

    from ..deploy import use_kernel
    from ..deploy.bench import bench_timm

    detector = args.arch.endswith(".py") or Path(args.arch).is_file()
    if detector and (args.num_classes is not None or args.in_chans is not None):
        raise ValueError(
            "--num-classes and --in-chans are timm arguments; a detector config sets its own "
            "classes and input channels"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    forced = use_kernel(args.kernel) if args.kernel else contextlib.nullcontext()
    if detector:
        from ..integrations.mmdet.bench import bench_detector

        with forced:
            result = bench_detector(
                args.arch, recipe=args.recipe or "det-adabin", batch=args.batch,
                input_size=tuple(args.input_size) if args.input_size else None, reps=args.reps,
                clock=args.clock, float_parts=args.float_parts,
            )  # fmt: skip
        _print(result, args.json)
        return 0
    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.in_chans is not None:
        kwargs["in_chans"] = args.in_chans
    with forced:
        result = bench_timm(
            args.arch,
            recipe=args.recipe or "adabin",
            batch=args.batch,
            input_size=tuple(args.input_size) if args.input_size else None,
            reps=args.reps,
            clock=args.clock,
            float_parts=args.float_parts,
            **kwargs,
        )
    _print(result, args.json)
    return 0


def _print(result, as_json: bool) -> None:
    import dataclasses

    if as_json:
        data = dataclasses.asdict(result)
        data["breakdown"] = result.breakdown()
        print(json.dumps(data, indent=2))
    else:
        print(result.table())
