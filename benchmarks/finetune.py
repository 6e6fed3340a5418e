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
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

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


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds for one training step (forward, backward, Adam step)."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def measure_step_ratios(models: dict[str, torch.nn.Module], batch: int, repeats: int) -> dict:
    data = load_dataset("mnist5k", "train")
    x = torch.stack([data[i][0] for i in range(batch)])
    y = torch.tensor([data[i][1] for i in range(batch)])
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        step_time(model, x, y)
    for _ in range(repeats):  # interleaved so machine noise hits every model alike
        for name, model in models.items():
            times[name].append(step_time(model, x, y))
    med = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"ms": 1000 * med[name], "ratio": med[name] / med["float"]} for name in med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
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

    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    common = {"lr": args.lr, "batch_size": args.batch_size, "progress": False, "plots": False}
    acc: dict[str, list[float]] = {"float teacher": []}
    acc.update({name: [] for name in VARIANTS})
    example = (torch.zeros(2, 1, 28, 28),)
    for seed in args.seeds:
        torch.manual_seed(seed)
        teacher = timm.create_model(args.arch, num_classes=10, in_chans=1)
        out = Path(args.out) / f"seed{seed}"
        teacher_cfg = {"kd_weight": 0.0, "ce_weight": 1.0, "seed": seed, **common}
        train_float(teacher, train, test, epochs=args.teacher_epochs, out_dir=out / "teacher",
                    config=teacher_cfg)  # fmt: skip
        teacher.eval()
        acc["float teacher"].append(evaluate(teacher, test)["acc"])
        for name, spec in VARIANTS.items():
            student = autobin.binarize(teacher, spec["recipe"], example_inputs=example)
            cfg = {"seed": seed, **common, **spec["config"]}
            tag = name.replace(" ", "_").replace(",", "").replace("+", "").replace("(", "")
            finetune(student, teacher, train, test, epochs=args.epochs, config=cfg,
                     out_dir=out / tag.replace(")", ""))  # fmt: skip
            acc[name].append(evaluate(student, test)["acc"])
            print(f"seed {seed} {name}: {acc[name][-1]:.2f}%", flush=True)

    teacher = timm.create_model(args.arch, num_classes=10, in_chans=1)
    models = {"float": teacher}
    for name, spec in VARIANTS.items():
        models[name] = autobin.binarize(teacher, spec["recipe"], example_inputs=example)
    models["adabin two-step + distillation"].apply(
        lambda m: setattr(m, "binarize_weights", True) if hasattr(m, "binarize_weights") else None
    )
    steps = {bs: measure_step_ratios(models, bs, args.step_repeats) for bs in args.step_batch_sizes}

    print()
    print(f"mnist5k, timm {args.arch}, teacher {args.teacher_epochs} epochs, students "
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
