"""Finetuning benchmark on mnist5k: float teacher vs AdaBin variants vs BNN / XNOR baselines.

Every binary variant gets the same training budget (epochs, batch size, lr schedule) from the
same float teacher of its seed. Prints one table: test accuracy (mean and spread over seeds)
and the training step time of each binary model relative to the float model, measured side by
side in this run (interleaved, median of repeats) on the same batch.

    .venv/bin/python benchmarks/finetune.py --seeds 0 1 2 --teacher-epochs 4 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import timm
import torch
from step_time import measure_step_ratios  # benchmarks/ is on sys.path when run as a script

import autobin
from autobin.data import load_dataset
from autobin.train import evaluate, finetune, train_float

VARIANTS = {
    "adabin + distillation": {"recipe": "adabin", "config": {"kd_weight": 1.0}},
    "adabin, no distillation": {"recipe": "adabin", "config": {"kd_weight": 0.0, "ce_weight": 1.0}},
    "adabin two-step + distillation": {
        "recipe": "adabin",
        "config": {"kd_weight": 1.0, "two_step": True},
    },
    "bnn (sign) + distillation": {"recipe": "bnn", "config": {"kd_weight": 1.0}},
    "xnor + distillation": {"recipe": "xnor", "config": {"kd_weight": 1.0}},
}


def measure_on_mnist(models: dict, batch: int, repeats: int) -> dict:
    """Step-time ratios on one batch of mnist5k training images."""
    data = load_dataset("mnist5k", "train")
    x = torch.stack([data[i][0] for i in range(batch)])
    y = torch.tensor([data[i][1] for i in range(batch)])
    return measure_step_ratios(models, x, y, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--data", default="mnist5k", help="mnist5k or a slice, e.g. 'mnist5k[:512]'")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--step-batch-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: quieter timing)")
    ap.add_argument("--step-repeats", type=int, default=15)
    ap.add_argument("--out", default="runs/bench_finetune")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    common = {"lr": args.lr, "batch_size": args.batch_size, "progress": False, "plots": False}
    acc: dict[str, list[float]] = {"float teacher": []}
    acc.update({name: [] for name in VARIANTS})
    example = (torch.zeros(2, 1, 28, 28),)
    for seed in args.seeds:
        torch.manual_seed(seed)
        teacher = timm.create_model(args.arch, num_classes=10, in_chans=1)
        out = Path(args.out) / f"seed{seed}"
        teacher_cfg = {"kd_weight": 0.0, "ce_weight": 1.0, "seed": seed, **common}
        # --out is the benchmark's own folder: each run replaces the one before
        train_float(teacher, train, test, epochs=args.teacher_epochs, out_dir=out / "teacher",
                    config=teacher_cfg, overwrite=True)  # fmt: skip
        teacher.eval()
        acc["float teacher"].append(evaluate(teacher, test)["acc"])
        for name, spec in VARIANTS.items():
            student = autobin.binarize(teacher, spec["recipe"], example_inputs=example)
            cfg = {"seed": seed, **common, **spec["config"]}
            tag = name.replace(" ", "_").replace(",", "").replace("+", "").replace("(", "")
            finetune(student, teacher, train, test, epochs=args.epochs, config=cfg,
                     out_dir=out / tag.replace(")", ""), overwrite=True)  # fmt: skip
            acc[name].append(evaluate(student, test)["acc"])
            print(f"seed {seed} {name}: {acc[name][-1]:.2f}%", flush=True)

    teacher = timm.create_model(args.arch, num_classes=10, in_chans=1)
    models = {"float": teacher}
    for name, spec in VARIANTS.items():
        models[name] = autobin.binarize(teacher, spec["recipe"], example_inputs=example)
    models["adabin two-step + distillation"].apply(
        lambda m: setattr(m, "binarize_weights", True) if hasattr(m, "binarize_weights") else None
    )
    steps = {bs: measure_on_mnist(models, bs, args.step_repeats) for bs in args.step_batch_sizes}

    print()
    print(f"{args.data}, timm {args.arch}, teacher {args.teacher_epochs} epochs, students "
          f"{args.epochs} epochs, seeds {args.seeds}")  # fmt: skip
    head = "".join(f"{f'step/float @{bs}':>16s}" for bs in steps)
    print(f"{'model':34s}{'test acc % (mean +- sd)':>26s}{head}")
    results = {}
    for name, values in acc.items():
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        key = "float" if name == "float teacher" else name
        cells = "".join(
            f"{steps[bs][key]['ratio']:9.2f} ({steps[bs][key]['ms']:4.0f}ms)" for bs in steps
        )
        print(f"{name:34s}{mean:18.2f} +- {sd:4.2f}{cells}")
        results[name] = {"acc": values, "mean": mean, "sd": sd,
                         "step": {bs: steps[bs][key] for bs in steps}}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
