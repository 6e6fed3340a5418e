"""``autobin mmdet-*`` commands and ``autobin explain`` on an mmdet config.

* ``mmdet-data mnist-det PATH``: write the VOC-format ``mnist-det`` dataset;
* ``mmdet-config CONFIG --recipe R [--data mnist-det --data-root PATH] -o OUT.py``: wrap the
  config's detector in ``autobin.BinarizedDetector`` (``--float`` keeps it float);
* ``mmdet-train CONFIG`` / ``mmdet-test CONFIG CHECKPOINT``: mmengine's Runner, with the flags
  of mmdet's tools/train.py and tools/test.py.

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
    detector = build_float_detector(detector_config(cfg, args.arch), args.arch)
    report = explain_detector(detector, args.recipe, input_size=args.input_size)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ..data.mnist_det import missing_files, read_manifest, write_mnist_det

    before = read_manifest(args.path)
    missing = missing_files(args.path, before) if before is not None else []
    path = write_mnist_det(
        args.path,
        trainval=args.trainval,
        test=args.test,
        image_size=args.image_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    same = before is not None and before.get("spec") == read_manifest(path)["spec"]
    what = f"mnist-det ({args.trainval} trainval + {args.test} test images)"
    if same and not missing:
        print(f"{path} already holds {what}; kept it")
    elif same:
        print(f"repaired {what} at {path}: {len(missing)} missing files (e.g. {missing[0]}) "
              "were written again")  # fmt: skip
    else:
        print(f"wrote {what} to {path}")
    return 0


def _data_root(args: argparse.Namespace) -> str | None:
    if args.data is None:
        if args.data_root is not None:
            raise ValueError("--data-root needs --data (e.g. --data mnist-det)")
        return None
    if args.data != "mnist-det":
        raise ValueError(f"--data must be 'mnist-det', got {args.data!r}")
    return args.data_root or "data/mnist-det"


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
    p.add_argument("dataset", choices=["mnist-det"])
    p.add_argument("path", help="dataset root to create")
    p.add_argument("--trainval", type=int, default=400, help="trainval images (default 400)")
    p.add_argument("--test", type=int, default=100, help="test images (default 100)")
    p.add_argument("--image-size", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--data", default=None, help="train/test on a built-in dataset: mnist-det")
    p.add_argument("--data-root", default=None, help="its root (default data/mnist-det)")
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
