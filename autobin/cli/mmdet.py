"""``autobin mmdet-*`` commands and ``autobin explain`` on an mmdet config.

* ``mmdet-data {mnist-det,mnist-det-small} PATH``: write a VOC-format mnist-det dataset;
* ``mmdet-config CONFIG --recipe R [--data NAME --data-root PATH] -o OUT.py``: wrap the
  config's detector in ``autobin.BinarizedDetector`` (``--float`` keeps it float);
* ``mmdet-train CONFIG`` / ``mmdet-test CONFIG CHECKPOINT``: mmengine's Runner, with the flags
  of mmdet's tools/train.py and tools/test.py;
* ``mmdet-publish CONFIG CHECKPOINT NAME [--zoo-dir DIR]``: a trained binarized detector into
  the zoo.

mmengine and mmdet are imported inside the commands only.
"""

from __future__ import annotations

import argparse
import json

MMDET_PREFIX = "mmdet::"


def is_mmdet_config(name: str) -> bool:
    """True for ``mmdet::...`` and ``*.py`` arguments (an mmdet config, not a timm name)."""
    return name.startswith(MMDET_PREFIX) or name.endswith(".py")


def cmd_explain(args: argparse.Namespace) -> int:
    """``autobin explain CONFIG``: the per-layer table for the config's detector."""
    from ..integrations.mmdet import build_float_detector, explain_detector, load_config
    from ..integrations.mmdet.config import detector_config

    cfg = load_config(args.arch)
    detector = build_float_detector(detector_config(cfg), args.arch)
    report = explain_detector(detector, args.recipe, input_size=args.input_size)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ..data.mnist_det import read_manifest, write_preset

    fields = ("trainval", "test", "image_size", "seed")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    path = write_preset(args.dataset, args.path, overwrite=args.overwrite, **overrides)
    images = read_manifest(path)["images"]
    print(f"wrote {args.dataset} ({images['trainval']} trainval + {images['test']} test images) "
          f"to {path}")  # fmt: skip
    return 0


def _data_root(args: argparse.Namespace) -> str | None:
    from ..data.mnist_det import PRESETS

    if args.data is None:
        if args.data_root is not None:
            raise ValueError("--data-root needs --data (e.g. --data mnist-det-small)")
        return None
    if args.data not in PRESETS:
        raise ValueError(f"--data must be one of {sorted(PRESETS)}, got {args.data!r}")
    return args.data_root or f"data/{args.data}"


def cmd_config(args: argparse.Namespace) -> int:
    from ..integrations.mmdet import float_config, make_binarized_config, write_config

    data_root = _data_root(args)
    if args.float:
        cfg = float_config(args.config, data_root=data_root)
    else:
        distill = None if args.no_distill else json.loads(args.distill)
        cfg = make_binarized_config(
            args.config, args.recipe, teacher=args.teacher, distill=distill, data_root=data_root
        )
    path = write_config(cfg, args.output)
    print(f"wrote {path}")
    return 0


def _resume(value: str | None) -> str | bool | None:
    return True if value == "auto" else value


def cmd_train(args: argparse.Namespace) -> int:
    from ..integrations.mmdet import train
    from ..integrations.mmdet.runner import parse_cfg_options

    work_dir = train(
        args.config,
        work_dir=args.work_dir,
        cfg_options=parse_cfg_options(args.cfg_options),
        resume=_resume(args.resume),
        launcher=args.launcher,
        amp=args.amp,
    )
    print(f"trained; checkpoints and logs in {work_dir}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from ..integrations.mmdet import test
    from ..integrations.mmdet.runner import parse_cfg_options

    metrics = test(
        args.config,
        args.checkpoint,
        work_dir=args.work_dir,
        cfg_options=parse_cfg_options(args.cfg_options),
        launcher=args.launcher,
    )
    print(json.dumps(metrics, indent=2, default=float))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from ..integrations.mmdet.publish import publish_detector

    metrics = json.loads(args.metrics) if args.metrics else None
    path = publish_detector(
        args.config,
        args.checkpoint,
        args.name,
        zoo_dir=args.zoo_dir,
        metrics=metrics,
        overwrite=args.overwrite,
    )
    print(f"published {args.name} to {path}")
    return 0


def _runner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", default=None, help="logs and checkpoints (default from config)")
    p.add_argument(
        "--cfg-options",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override config keys, e.g. train_cfg.max_epochs=2 train_dataloader.batch_size=4",
    )
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")


def register(sub) -> None:
    """Add the ``mmdet-*`` subcommands to the ``autobin`` parser."""
    p = sub.add_parser("mmdet-data", help="write a VOC-format detection dataset (mnist-det)")
    p.add_argument("dataset", choices=["mnist-det", "mnist-det-small"])
    p.add_argument("path", help="dataset root to create")
    p.add_argument("--trainval", type=int, default=None, help="trainval images (preset's)")
    p.add_argument("--test", type=int, default=None, help="test images (preset's)")
    p.add_argument("--image-size", type=int, default=None, help="image side (preset's)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (preset's: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace PATH if it holds other data")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("mmdet-config", help="wrap an mmdet config's detector for binarization")
    p.add_argument("config", help="mmdet config, e.g. mmdet::pascal_voc/ssd300_voc0712.py")
    p.add_argument("--recipe", default="det-adabin", help="recipe name or YAML path")
    p.add_argument("--teacher", default=None, help="float detector checkpoint (teacher + start)")
    p.add_argument(
        "--distill",
        default="{}",
        help='distillation weights as JSON, e.g. \'{"feature_weight": 1, "cls_weight": 1}\'',
    )
    p.add_argument("--no-distill", action="store_true", help="train without distillation")
    p.add_argument("--float", action="store_true", help="keep the detector float (baseline)")
    p.add_argument(
        "--data", default=None, help="train/test on a built-in dataset: mnist-det, mnist-det-small"
    )
    p.add_argument("--data-root", default=None, help="its root (default data/NAME)")
    p.add_argument("-o", "--output", required=True, help="output config (.py)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("mmdet-train", help="train an mmdet config with mmengine's Runner")
    p.add_argument("config")
    _runner_flags(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from the latest checkpoint in the work dir, or from the given one",
    )
    p.add_argument("--amp", action="store_true", help="mixed precision")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("mmdet-test", help="evaluate a checkpoint with mmdet's metric")
    p.add_argument("config")
    p.add_argument("checkpoint")
    _runner_flags(p)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("mmdet-publish", help="publish a trained binarized detector to the zoo")
    p.add_argument("config", help="binarized config (written by mmdet-config)")
    p.add_argument("checkpoint", help="checkpoint its training wrote (WORK_DIR/iter_N.pth)")
    p.add_argument("name", help="zoo entry name")
    p.add_argument("--zoo-dir", default="zoo", help="zoo directory (default zoo)")
    p.add_argument("--metrics", default=None, help="metrics as JSON, e.g. '{\"map50\": 0.9}'")
    p.add_argument("--overwrite", action="store_true", help="replace an entry of that name")
    p.set_defaults(func=cmd_publish)
