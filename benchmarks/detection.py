"""Detection benchmark: float SSD300 vs binarized SSD300 with and without distillation.

On ``mnist-det`` (real mnist5k digits in a VOC layout, see ``autobin mmdet-data``), three runs
through mmengine's Runner, each for the same budget of ``--iters`` iterations at batch
``--batch`` (same optimizer and schedule):

1. float SSD300 (``mmdet::pascal_voc/ssd300_voc0712.py``) from scratch;
2. binarized SSD300 (recipe ``ssd300-adabin``) started from run 1's weights, trained with
   distillation from run 1 as the frozen teacher (neck features + head class scores);
3. the same student without distillation.

Each is evaluated with mmdet's VOCMetric (mAP at IoU 0.5) on the test split. Printed side by
side: mAP, seconds per training iteration, the share of conv MACs that is binary, and the two
goal ratios (distilled binary >= 80% of float mAP; distilled beats not distilled).

The training pipeline drops SSD's Expand and MinIoURandomCrop (mnist-det already varies digit
scale and position; at small budgets the zoom-out only makes digits too small to learn).

    python benchmarks/detection.py --trainval 100 --test 25 --iters 40 --batch 2 --workers 0
    python benchmarks/detection.py --demo        # make demo-det: 30 iterations, then the zoo
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

SSD_VOC = "mmdet::pascal_voc/ssd300_voc0712.py"
RECIPE = "ssd300-adabin"
GOAL_RATIO = 0.8
MEANINGFUL_MAP = 0.05
DROPPED_TRANSFORMS = ("Expand", "MinIoURandomCrop")


def _budget_options(args: argparse.Namespace) -> dict:
    warmup = max(1, min(50, args.iters // 10))
    return {
        "train_cfg": {
            "_delete_": True,  # merge_from_dict merges dicts; these replace the config's
            "type": "IterBasedTrainLoop",
            "max_iters": args.iters,
            "val_interval": args.iters + 1,  # evaluated once, afterwards, by mmdet-test
        },
        "train_dataloader.batch_size": args.batch,
        "train_dataloader.num_workers": args.workers,
        "train_dataloader.persistent_workers": False,
        "train_dataloader.sampler": {"_delete_": True, "type": "InfiniteSampler", "shuffle": True},
        "val_dataloader.num_workers": 0,
        "test_dataloader.num_workers": 0,
        "optim_wrapper": {
            "_delete_": True,
            "type": "OptimWrapper",
            "optimizer": {"type": "AdamW", "lr": args.lr, "weight_decay": 1e-4},
            "clip_grad": {"max_norm": 10.0},
        },
        "param_scheduler": [
            {
                "type": "LinearLR",
                "start_factor": 0.01,
                "by_epoch": False,
                "begin": 0,
                "end": warmup,
            },
            {
                "type": "CosineAnnealingLR",
                "by_epoch": False,
                "begin": warmup,
                "end": args.iters,
                "T_max": args.iters - warmup,
                "eta_min": args.lr * 0.01,
            },
        ],
        "default_hooks.checkpoint": {
            "_delete_": True,
            "type": "CheckpointHook",
            "by_epoch": False,
            "interval": args.iters,
        },
        "default_hooks.logger.interval": max(1, args.iters // 20),
        "log_processor.by_epoch": False,
        "randomness.seed": args.seed,
        "auto_scale_lr.enable": False,
    }


def _simplify_pipeline(cfg) -> None:
    pipeline = [t for t in cfg.train_dataloader.dataset.pipeline
                if t["type"] not in DROPPED_TRANSFORMS]  # fmt: skip
    cfg.train_dataloader.dataset.pipeline = pipeline


def _run(name: str, cfg, args: argparse.Namespace, out: Path) -> dict:
    from autobin.integrations.mmdet import test, train, write_config

    cfg.merge_from_dict(_budget_options(args))
    _simplify_pipeline(cfg)
    config_path = write_config(cfg, out / f"{name}.py")
    work = out / name
    start = time.perf_counter()
    train(config_path, work_dir=work)
    seconds = time.perf_counter() - start
    checkpoint = work / f"iter_{args.iters}.pth"
    metrics = test(config_path, checkpoint, work_dir=work / "test")
    return {
        "run": name,
        "mAP": float(metrics["pascal_voc/mAP"]),
        "s_per_iter": seconds / args.iters,
        "checkpoint": str(checkpoint),
        "config": str(config_path),
    }


def _binary_mac_share(config_path: str) -> float:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope("mmdet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = Config.fromfile(config_path)
        cfg.model.teacher = None
        cfg.model.distill = None
        model = MODELS.build(cfg.model)
    return float(model.autobin_report.totals["binary_mac_share"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-det", help="work directory")
    p.add_argument("--data", default=None, help="mnist-det root (default OUT/data)")
    p.add_argument("--trainval", type=int, default=400)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--iters", type=int, default=300, help="training budget per run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    demo_help = "make demo-det: small budget, then publish the student to OUT/zoo"
    p.add_argument("--demo", action="store_true", help=demo_help)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.demo:
        args.trainval, args.test = min(args.trainval, 100), min(args.test, 25)
        args.iters, args.batch = min(args.iters, 30), min(args.batch, 2)

    import autobin.integrations.mmdet as integration
    from autobin.data.mnist_det import write_mnist_det

    out = Path(args.out)
    data = write_mnist_det(args.data or out / "data", trainval=args.trainval, test=args.test)
    print(f"mnist-det: {args.trainval} trainval / {args.test} test images at {data}")
    print(f"budget per run: {args.iters} iterations at batch {args.batch} (AdamW lr {args.lr})")

    results = [_run("float", integration.float_config(SSD_VOC, data_root=data), args, out)]
    teacher = results[0]["checkpoint"]
    # both terms at 0: make_binarized_config writes distill=None as {} (the default weights)
    no_distill = {"feature_weight": 0.0, "cls_weight": 0.0}
    for name, distill in (("binary_distill", {}), ("binary_plain", no_distill)):
        cfg = integration.make_binarized_config(
            SSD_VOC, RECIPE, teacher=teacher, distill=distill, data_root=data
        )
        results.append(_run(name, cfg, args, out))
    share = _binary_mac_share(results[1]["config"])
    for r in results:
        r["binary_mac_share"] = 0.0 if r["run"] == "float" else share

    print(f"\n{'run':16s} {'mAP@0.5':>8s} {'s/iter':>8s} {'binary MACs':>12s}")
    for r in results:
        print(f"{r['run']:16s} {r['mAP']:8.4f} {r['s_per_iter']:8.2f} "
              f"{100 * r['binary_mac_share']:11.1f}%")  # fmt: skip
    float_map, distill_map, plain_map = (r["mAP"] for r in results)
    if float_map < MEANINGFUL_MAP:
        print(
            f"\nnote: the float model reached mAP {float_map:.4f} < {MEANINGFUL_MAP} at this "
            "budget: it has not learned yet and the ratios below are noise; raise --iters"
        )
    ratio = distill_map / float_map if float_map > 0 else math.nan
    print(f"\nbinary+distill / float mAP: {ratio:.3f} (goal >= {GOAL_RATIO})")
    print(f"binary+distill - binary mAP: {distill_map - plain_map:+.4f} (goal > 0)")
    print(f"binary / float s/iter: {results[1]['s_per_iter'] / results[0]['s_per_iter']:.2f}x "
          "(fake-quantized training on the CPU, distillation adds a teacher forward)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.demo:
        _publish(results[1], out)
    return 0


def _publish(result: dict, out: Path) -> None:
    """Load the distilled student from its checkpoint and publish it to ``out/zoo``."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from autobin import zoo
    from autobin.integrations.mmdet.offline import load_checkpoint_file

    init_default_scope("mmdet")
    cfg = Config.fromfile(result["config"])
    cfg.model.teacher, cfg.model.distill = None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MODELS.build(cfg.model)
    state = load_checkpoint_file(result["checkpoint"])
    model.load_state_dict(state)
    detector = model.detector.eval()
    with torch.no_grad():
        path = zoo.publish(detector, "ssd300.adabin_mnist-det", zoo_dir=out / "zoo",
                           metrics={"voc_mAP50": round(result["mAP"], 4)},
                           dataset="mnist-det", overwrite=True)  # fmt: skip
    print(f"published the distilled binary SSD300 to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
