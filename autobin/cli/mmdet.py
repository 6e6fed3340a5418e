"""``autobin mmdet-*`` commands and ``autobin explain`` on an mmdet config.

* ``mmdet-data {mnist-det,mnist-det-small} PATH``: write a VOC-format mnist-det dataset;
* ``mmdet-config CONFIG --recipe R [--data NAME --data-root PATH] -o OUT.py``: wrap the
  config's detector in ``autobin.BinarizedDetector`` (``--float`` keeps it float);
* ``mmdet-train CONFIG`` / ``mmdet-test CONFIG CHECKPOINT``: mmengine's Runner, with the flags
  of mmdet's tools/train.py and tools/test.py;
* ``mmdet-publish CONFIG CHECKPOINT NAME [--zoo-dir DIR]``: a trained binarized detector into
  the zoo;
* ``search CONFIG --data NAME|PATH --teacher CKPT <budget> -o R.yaml``: which layers of the
  config's detector stay float (``autobin search`` on a timm name is in :mod:`.main`).

mmengine and mmdet are imported inside the commands only.
"""

from __future__ import annotations

import argparse
import json

MMDET_PREFIX = "mmdet::"
DEFAULT_DETECTOR_RECIPE = "det-adabin"
# --no-distill: both terms off (make_binarized_config writes distill=None as {}, which means the
# default weights, distillation on)


def is_mmdet_config(name: str) -> bool:
    """True for ``mmdet::...`` and ``*.py`` arguments (an mmdet config, not a timm name)."""
    return name.startswith(MMDET_PREFIX) or name.endswith(".py")


def refuse_timm_flags(args: argparse.Namespace, command: str) -> None:
    """Refuse the timm model flags that an mmdet config decides itself."""
    flags = (("--num-classes", args.num_classes), ("--in-chans", args.in_chans))
    given = [flag for flag, value in flags if value is not None]
    if given:
        raise ValueError(
            f"{' and '.join(given)} cannot apply to an mmdet config: its model section decides "
            f"the classes and input channels; drop {'them' if len(given) > 1 else 'it'} from "
            f"`autobin {command}`, or change the config"
        )


def parse_distill(text: str) -> dict:
    """``--distill`` JSON: an object of distillation weights (its keys are checked later)."""
    example = '\'{"feature_weight": 1, "cls_weight": 1, "temperature": 1}\''
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--distill takes a JSON object such as {example}; {text!r} is not valid JSON "
            f"({exc.msg} at character {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"--distill takes a JSON object such as {example}; got a {type(value).__name__}"
        )
    return value


def cmd_explain(args: argparse.Namespace) -> int:
    """``autobin explain CONFIG``: the per-layer table for the config's detector."""
    refuse_timm_flags(args, "explain")
    from ..integrations.mmdet import build_float_detector, explain_detector, load_config
    from ..integrations.mmdet.config import detector_config

    cfg = load_config(args.arch)
    detector = build_float_detector(detector_config(cfg), args.arch)
    report = explain_detector(detector, args.recipe, input_size=args.input_size)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def _search_root(args: argparse.Namespace) -> str:
    """The calibration root of ``autobin search CONFIG``: a preset name (as ``mmdet-config
    --data``) or the path of a VOC-format root."""
    from ..data.mnist_det import PRESETS

    if args.data is None:
        raise ValueError(
            f"searching an mmdet config needs --data: {' or '.join(sorted(PRESETS))} (root "
            "data/NAME, or --data-root PATH) or the path of a VOC-format root"
        )
    if args.data in PRESETS:
        return _data_root(args)
    if args.data_root is not None:
        raise ValueError(f"--data-root goes with a preset --data name, not a path ({args.data})")
    return args.data


def cmd_search(args: argparse.Namespace, options: dict) -> int:
    """``autobin search CONFIG``: measure which of the detector's layers stay float;
    ``options`` are the budget and calibration keyword arguments of ``autobin.search``."""
    refuse_timm_flags(args, "search")
    if args.teacher_epochs is not None:
        raise ValueError(
            "--teacher-epochs trains a timm teacher; for an mmdet config train the float "
            "detector with `autobin mmdet-config CONFIG --float ...` and `autobin mmdet-train`, "
            "then pass its checkpoint as --teacher"
        )
    data_root = _search_root(args)
    if args.teacher is None:
        raise ValueError(
            f"searching {args.arch} needs --teacher CHECKPOINT, a float detector trained with "
            "this config (`autobin mmdet-config CONFIG --float --data ... -o f.py`, `autobin "
            "mmdet-train f.py`): the sensitivity of an untrained detector says nothing"
        )
    from ..integrations.mmdet import search_detector

    result = search_detector(
        args.arch,
        data_root=data_root,
        teacher=args.teacher,
        output=args.output,
        recipe=args.recipe or DEFAULT_DETECTOR_RECIPE,
        input_size=args.input_size,
        report_dir=args.report_dir,
        seed=args.seed,
        **options,
    )
    print(result.summary())
    print(f"wrote {result.output} (use it like any recipe: autobin mmdet-config {args.arch} "
          f"--recipe {result.output} ...) and the report in {result.report_dir}")  # fmt: skip
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ..data.mnist_det import missing_files, read_manifest, write_preset

    fields = ("trainval", "test", "image_size", "seed")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    before = read_manifest(args.path)
    missing = missing_files(args.path, before) if before is not None else []
    path = write_preset(args.dataset, args.path, overwrite=args.overwrite, **overrides)
    after = read_manifest(path)
    images = after["images"]
    what = f"{args.dataset} ({images['trainval']} trainval + {images['test']} test images)"
    same = before is not None and before.get("spec") == after["spec"]
    if same and not missing:
        print(f"{path} already holds {what}; kept it")
    elif same:
        print(f"repaired {what} at {path}: {len(missing)} missing files (e.g. {missing[0]}) "
              "were written again")  # fmt: skip
    else:
        print(f"wrote {what} to {path}")
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


def _binarize_flags(args: argparse.Namespace) -> list[str]:
    """The binarization flags given on the command line."""
    flags = (("--recipe", args.recipe), ("--teacher", args.teacher), ("--distill", args.distill),
             ("--no-distill", args.no_distill or None))  # fmt: skip
    return [flag for flag, value in flags if value is not None]


def cmd_config(args: argparse.Namespace) -> int:
    given = _binarize_flags(args)
    if args.float and given:
        raise ValueError(
            f"--float keeps the detector float, so {', '.join(given)} cannot apply; drop "
            f"{'them' if len(given) > 1 else 'it'}, or drop --float to binarize"
        )
    if args.no_distill and args.distill is not None:
        raise ValueError("--no-distill and --distill contradict each other; give one of them")
    distill = parse_distill(args.distill) if args.distill is not None else {}
    data_root = _data_root(args)
    from ..integrations.mmdet import float_config, make_binarized_config, write_config
    from ..integrations.mmdet.distill import DistillConfig

    if args.float:
        cfg = float_config(args.config, data_root=data_root)
    else:
        DistillConfig.from_dict(distill)  # unknown keys and bad values: refused now, not later
        recipe = args.recipe or DEFAULT_DETECTOR_RECIPE
        cfg = make_binarized_config(
            args.config, recipe, teacher=args.teacher,
            distill=None if args.no_distill else distill, data_root=data_root,
        )  # fmt: skip
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
    p.add_argument(
        "--recipe",
        default=None,
        help=f"recipe name or YAML path (default {DEFAULT_DETECTOR_RECIPE})",
    )
    p.add_argument("--teacher", default=None, help="float detector checkpoint (teacher + start)")
    p.add_argument(
        "--distill",
        default=None,
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
