"""Float-layer search benchmark on mnist5k: searched recipes vs the hand policy of ``adabin``.

For each architecture: a float teacher is trained, ``autobin.search`` measures it once (timed),
and students are finetuned by distillation with the same budget (epochs, batch, lr) from that
teacher under these recipes:

* ``adabin``: the hand policy (stem, classifier, shortcut/downsample, depthwise convs float);
* ``searched @ adabin share``: the searched recipe at the binary MAC share of ``adabin``;
* ``searched @ half``: the searched recipe at half of ``adabin``'s float MACs;
* ``hand order @ half``: ``adabin`` with its float layers binarized in the hand policy's order
  (shortcut/downsample, depthwise, linears, classifier, stem; largest first within a group)
  until half of its float MACs remain;
* the curve: searched recipes at multiples of ``adabin``'s float MACs.

Prints per recipe the float MACs, binary share and test accuracy (mean and spread over seeds),
and the search's wall and CPU time. Students are evaluated once, after their last epoch, on the
test images. Sized for a shared 2-core machine (one process per architecture), e.g.:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search.py --archs resnet18 --threads 1 \
        --seeds 0 1 2 --teacher-size 1024 --teacher-epochs 3 --train-size 512 --epochs 2 \
        --batch-size 32 --test-size 500 --calibration-size 128 --curve 0 0.5 1 2 \
        --json runs/bench_search_resnet18.json

A teacher needs enough steps for its BatchNorm running statistics to settle (eval mode), or
it predicts one class and every student with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import Subset

import autobin
from autobin.data import load_dataset
from autobin.recipes import Recipe
from autobin.train import evaluate, finetune, train_float

HAND_ORDER = ("shortcut", "depthwise", "linears", "classifier", "stem")


def float_layers(report) -> tuple[str, ...]:
    return tuple(
        e.name
        for e in report.entries
        if e.kind in ("conv", "linear") and e.decision == "float" and e.rule != "unsupported"
    )


def random_subset(data, size: int) -> Subset:
    """``size`` items of ``data`` chosen by a fixed seeded permutation."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1234))
    return Subset(data, order[: min(size, len(data))].tolist())


def hand_order_recipe(teacher, example, max_float_macs: float) -> Recipe:
    """``adabin`` with its float layers binarized in the hand policy's order until the model
    has at most ``max_float_macs`` float MACs."""
    report = autobin.explain(teacher, "adabin", example_inputs=example)
    floats = [e for e in report.entries if e.kind in ("conv", "linear") and e.decision == "float"]
    rank = {rule: i for i, rule in enumerate(HAND_ORDER)}
    order = sorted(
        (e for e in floats if e.rule in rank), key=lambda e: (rank[e.rule], -e.macs, e.name)
    )
    flops, removed = report.totals["flops"], []
    for entry in order:
        if flops <= max_float_macs:
            break
        removed.append(entry.name)
        flops -= entry.macs
    data = autobin.load_recipe("adabin").to_dict()
    data["name"] = "adabin-hand-order"
    own = [
        {"name": f"hand-binary-{n}", "match": {"name": [n]}, "action": "binarize"} for n in removed
    ]
    data["rules"] = own + data["rules"]
    return Recipe.from_dict(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["resnet18", "mobilenetv3_small_100"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=4000, help="train images of the students")
    ap.add_argument("--teacher-size", type=int, default=4000, help="train images of the teacher")
    ap.add_argument("--test-size", type=int, default=1000, help="mnist5k test images used")
    ap.add_argument("--calibration-size", type=int, default=256)
    ap.add_argument("--curve", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0],
                    help="float-MAC budgets as multiples of adabin's float MACs")  # fmt: skip
    ap.add_argument("--curve-seeds", type=int, default=1, help="seeds per curve point")
    ap.add_argument("--lr", type=float, default=2e-3, help="students' learning rate")
    ap.add_argument("--teacher-lr", type=float, default=None, help="teacher's (default --lr)")
    ap.add_argument("--teacher-batch-size", type=int, default=None,
                    help="teacher's batch (default --batch-size)")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--reuse-teacher", action="store_true",
                    help="load OUT/ARCH/teacher/last.pt if it exists, else train")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train_full, test_full = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    # seeded random subsets: the built-in splits are stored in label order
    train = random_subset(train_full, args.train_size)
    teacher_train = random_subset(train_full, args.teacher_size)
    test = random_subset(test_full, args.test_size)
    example = (torch.zeros(2, 1, 28, 28),)
    common = {"lr": args.lr, "batch_size": args.batch_size, "progress": False, "plots": False}
    results = {}
    for arch in args.archs:
        out = Path(args.out) / arch
        torch.manual_seed(0)
        teacher = timm.create_model(arch, num_classes=10, in_chans=1)
        teacher_cfg = {"kd_weight": 0.0, "ce_weight": 1.0, "seed": 0, **common}
        teacher_cfg["lr"] = args.teacher_lr or args.lr
        teacher_cfg["batch_size"] = args.teacher_batch_size or args.batch_size
        if args.reuse_teacher and (out / "teacher" / "last.pt").is_file():
            state = torch.load(out / "teacher" / "last.pt", weights_only=True)["model"]
            teacher.load_state_dict(state)
        else:
            train_float(teacher, teacher_train, None, epochs=args.teacher_epochs,
                        out_dir=out / "teacher", config=teacher_cfg, overwrite=True)  # fmt: skip
        teacher.eval()
        teacher_acc = evaluate(teacher, test)["acc"]
        base = autobin.explain(teacher, "adabin", example_inputs=example).totals
        wall, cpu = time.perf_counter(), time.process_time()
        found = autobin.search(
            teacher,
            train_full,
            "adabin",
            min_binary_share=base["binary_mac_share"],
            calibration_size=args.calibration_size,
            output=out / "searched.yaml",
            progress=False,
        )
        search_wall, search_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(found.summary(), flush=True)
        half = base["flops"] / 2
        recipes = {
            "adabin": ("adabin", args.seeds),
            "searched @ adabin share": (found.recipe, args.seeds),
            "searched @ half": (found.recipe_for(max_float_macs=half), args.seeds),
            "hand order @ half": (hand_order_recipe(teacher, example, half), args.seeds),
        }
        for factor in args.curve:
            recipe = found.recipe_for(max_float_macs=factor * base["flops"])
            recipes[f"curve {factor:g}x"] = (recipe, args.seeds[: args.curve_seeds])
        done: dict[tuple, float] = {}  # (seed, float layers) -> accuracy: identical runs once
        rows = {}
        for label, (recipe, seeds) in recipes.items():
            report = autobin.explain(teacher, recipe, example_inputs=example)
            totals, floats = report.totals, float_layers(report)
            accs = []
            for seed in seeds:
                key = (seed, floats)
                if key not in done:
                    torch.manual_seed(seed)
                    student = autobin.binarize(teacher, recipe, example_inputs=example)
                    tag = f"{label.replace(' ', '_').replace('@', 'at')}_seed{seed}"
                    finetune(student, teacher, train, None, epochs=args.epochs,
                             config={"kd_weight": 1.0, "seed": seed, **common},
                             out_dir=out / tag, overwrite=True)  # fmt: skip
                    done[key] = evaluate(student, test)["acc"]
                accs.append(done[key])
            rows[label] = {
                "float_macs": totals["flops"],
                "binary_share": totals["binary_mac_share"],
                "float_layers": list(floats),
                "acc": accs,
            }
            print(f"{arch} {label}: float MACs {totals['flops']:,}, share "
                  f"{100 * totals['binary_mac_share']:.2f}%, acc {accs}", flush=True)  # fmt: skip
        results[arch] = {
            "teacher_acc": teacher_acc,
            "search_wall_s": search_wall,
            "search_cpu_s": search_cpu,
            "candidates": len(found.layers),
            "searched_float_layers": found.float_layers,
            "rows": rows,
        }
    print_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict, args: argparse.Namespace) -> None:
    print(f"\nmnist5k, teacher {args.teacher_size} train images x {args.teacher_epochs} epochs, "
          f"students {args.train_size} x {args.epochs}, batch {args.batch_size}, "
          f"{args.test_size} test images, {args.threads} threads")  # fmt: skip
    for arch, r in results.items():
        print(f"\n{arch}: teacher {r['teacher_acc']:.2f}%, search {r['search_wall_s']:.0f} s "
              f"wall / {r['search_cpu_s']:.0f} s CPU ({r['candidates']} candidates)")  # fmt: skip
        print(f"{'recipe':26s}{'float MACs':>12s}{'binary %':>10s}{'#float':>8s}{'acc %':>16s}")
        for label, row in r["rows"].items():
            accs = row["acc"]
            spread = f" +- {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
            mean = statistics.mean(accs)
            print(f"{label:26s}{row['float_macs']:>12,}{100 * row['binary_share']:>10.2f}"
                  f"{len(row['float_layers']):>8d}{mean:>9.2f}{spread:7s}")  # fmt: skip


if __name__ == "__main__":
    main()
