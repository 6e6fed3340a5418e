"""``autobin`` command line: explain, binarize, train, search, zoo, demo, recipes, configs, bench.

Every command parses its arguments and calls the public API; heavy imports happen inside the
command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .errors import (
    budget_number,
    existing_dir,
    output_dir,
    output_file,
    positive_int,
    run_command,
    share,
)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "arch", help="timm architecture name (e.g. resnet18), or an mmdet config for explain"
    )
    p.add_argument("--recipe", default="adabin", help="recipe name or YAML path (default adabin)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier outputs")
    p.add_argument("--in-chans", type=positive_int, default=None, help="input channels")
    p.add_argument(
        "--input-size",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="example input size for shape propagation (default: the model's own)",
    )


def _create(args: argparse.Namespace):
    from ..pipelines import create_float_model

    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.in_chans is not None:
        kwargs["in_chans"] = args.in_chans
    return create_float_model(args.arch, **kwargs)


def _example(model, args: argparse.Namespace):
    if args.input_size is None:
        return None
    import torch

    from ..graph import family_of

    chans = args.in_chans or family_of(model).input_shape(model)[0]
    return (torch.randn(2, chans, *args.input_size),)


def cmd_explain(args: argparse.Namespace) -> int:
    import autobin

    from . import mmdet

    if mmdet.is_mmdet_config(args.arch):
        return mmdet.cmd_explain(args)
    model = _create(args)
    report = autobin.explain(model, args.recipe, example_inputs=_example(model, args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def cmd_binarize(args: argparse.Namespace) -> int:
    from ..pipelines import save_binarized
    from . import mmdet

    if mmdet.is_mmdet_config(args.arch):
        raise ValueError(
            f"autobin binarize takes a timm architecture; an mmdet config ({args.arch}) is "
            "binarized with `autobin mmdet-config CONFIG --recipe det-adabin -o OUT.py`, then "
            "trained with `autobin mmdet-train OUT.py`"
        )

    model = _create(args)
    kwargs = {k: v for k in ("num_classes", "in_chans") if (v := getattr(args, k)) is not None}
    path = save_binarized(
        model, args.recipe, args.output, example_inputs=_example(model, args), arch_kwargs=kwargs,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {path} (load it with autobin.load({str(path)!r}))")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..pipelines import train_binary

    result = train_binary(
        args.arch,
        recipe=args.recipe,
        data=args.data,
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        teacher=args.teacher,
        out_dir=args.output,
        config=args.config,
        resume=args.resume,
        overwrite=args.overwrite,
        seed=args.seed,
        compile=args.compile or None,
        from_scratch=args.from_scratch,
        teacher_arch=args.teacher_arch,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(result.summary())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..pipelines import search_arch
    from . import mmdet

    if mmdet.is_mmdet_config(args.arch):
        return mmdet.cmd_search(args, budget_options(args))
    if args.data_root is not None:
        raise ValueError("--data-root is for an mmdet config's dataset; drop it for a timm model")
    result = search_arch(
        args.arch,
        data=args.data or "mnist5k",
        output=args.output,
        recipe=args.recipe or "adabin",
        teacher=args.teacher,
        teacher_epochs=args.teacher_epochs or 3,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        input_size=tuple(args.input_size) if args.input_size else None,
        report_dir=args.report_dir,
        seed=args.seed,
        **budget_options(args),
    )
    print(result.summary())
    print(f"wrote {result.output} (use it like any recipe: autobin explain {args.arch} --recipe "
          f"{result.output}) and the report in {result.report_dir}")  # fmt: skip
    return 0


def budget_options(args: argparse.Namespace) -> dict:
    """The budget and calibration keyword arguments of ``autobin.search`` from the flags."""
    names = ("max_float_macs", "max_ops", "min_binary_share", "max_size", "calibration_size")
    return {name: getattr(args, name) for name in names}


def cmd_recipes(args: argparse.Namespace) -> int:
    import autobin

    for name in autobin.list_recipes():
        recipe = autobin.load_recipe(name)
        print(f"{name:14s} {recipe.description}")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig, list_train_configs, train_config_path

    for name in list_train_configs():
        cfg = TrainConfig.from_yaml(train_config_path(name))
        steps = "two-step" if cfg.two_step else "one-step"
        print(f"{name:28s} {cfg.epochs} epochs {steps}, {cfg.optimizer} lr {cfg.lr:g}, batch "
              f"{cfg.batch_size}/process, kd {cfg.kd_weight:g} ce {cfg.ce_weight:g}")  # fmt: skip
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.zoo_command == "list":
        entries = zoo.list_models(zoo_dir=args.zoo_dir)
        if not entries:
            print(f"zoo {args.zoo_dir} has no entries")
        for entry in entries:
            metrics = ", ".join(f"{k}={v}" for k, v in (entry.get("metrics") or {}).items())
            print(f"{entry['name']:32s} {metrics}")
    elif args.zoo_command == "show":
        print(json.dumps(zoo.show(args.name, zoo_dir=args.zoo_dir), indent=2))
    elif args.zoo_command == "publish":
        path = zoo.publish_run(args.run_dir, args.name, zoo_dir=args.zoo_dir)
        print(f"published {args.name} -> {path}")
    elif args.zoo_command == "verify":
        zoo.verify(args.name, zoo_dir=args.zoo_dir)
        print(f"{args.name}: all files match their sha256")
    elif args.zoo_command == "reindex":
        done = zoo.rebuild_index(args.zoo_dir)
        print(f"indexed {len(done['indexed'])} entries: {', '.join(done['indexed']) or '-'}")
        for name, reason in done["skipped"].items():
            print(f"skipped {name}: {reason}")
        return 1 if done["skipped"] else 0
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..pipelines import run_demo

    run_demo(
        out_dir=args.output,
        zoo_dir=args.zoo_dir,
        teacher_epochs=args.teacher_epochs,
        epochs=args.epochs,
        seed=args.seed,
        data=args.data,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autobin", description="Turn timm vision models into AdaBin binary networks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("explain", help="dry run: every layer, its decision, the rule and why")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("binarize", help="binarize a timm model and save it")
    _add_model_args(p)
    p.add_argument(
        "-o", "--output", required=True, type=output_file,
        help="output file: packed 1-bit safetensors with its config (autobin.load reads it)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=cmd_binarize)

    p = sub.add_parser("train", help="train a float teacher, binarize, finetune with distillation")
    p.add_argument("arch", help="timm architecture name, e.g. resnet18")
    p.add_argument("--recipe", default="adabin")
    p.add_argument(
        "--data",
        default="mnist5k",
        help="mnist5k | digits | imagefolder:PATH | cifar10:PATH | cifar100:PATH",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="finetuning epochs (default: the config's, 10 without --config)",
    )
    p.add_argument("--teacher", default=None, help="float teacher run dir or checkpoint")
    p.add_argument(
        "--teacher-arch",
        default=None,
        help="the teacher's timm architecture if not ARCH (e.g. resnet34 for resnet18); the "
        "student then starts from its random initialization",
    )
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="no float teacher: train the binarized random initialization (configs without "
        "distillation, as the released AdaBin scripts)",
    )
    p.add_argument(
        "--teacher-epochs",
        type=positive_int,
        default=None,
        help="epochs to train the float teacher",
    )
    p.add_argument(
        "--config",
        default=None,
        help="training config: a YAML file or a built-in name (autobin configs lists them)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace a run in the directory")
    p.add_argument("--compile", action="store_true", help="torch.compile the trained models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, type=output_dir, help="run directory")
    p.set_defaults(func=cmd_train)

    _add_search_parser(sub)

    p = sub.add_parser("recipes", help="list the built-in recipes")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("configs", help="list the built-in training configs (the paper's)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("zoo", help="published binary checkpoints")
    p.add_argument("--zoo-dir", default="zoo", type=existing_dir)
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    zsub.add_parser("list", help="list the entries")
    z = zsub.add_parser("show", help="print an entry's config")
    z.add_argument("name")
    z = zsub.add_parser("publish", help="publish a training run directory")
    z.add_argument("run_dir")
    z.add_argument("name")
    z = zsub.add_parser("verify", help="check an entry's files against their sha256")
    z.add_argument("name")
    zsub.add_parser("reindex", help="rebuild index.json from the entries' own checksums")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("demo", help="the whole story on mnist5k (the README's main job)")
    p.add_argument("-o", "--output", default="runs/demo", type=output_dir)
    p.add_argument(
        "--zoo-dir", default=None, type=existing_dir, help="zoo to publish to (default OUTPUT/zoo)"
    )
    p.add_argument("--teacher-epochs", type=positive_int, default=None)
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data", default="mnist5k", help="mnist5k, or a slice for a quick look: 'mnist5k[:512]'"
    )
    p.set_defaults(func=cmd_demo)

    from . import bench

    bench.add_parser(sub)

    from . import mmdet

    mmdet.register(sub)
    return parser


def _add_search_parser(sub) -> None:
    p = sub.add_parser(
        "search",
        help="measure which layers must stay float and write a recipe that meets a budget",
    )
    _add_model_args(p)
    p.set_defaults(recipe=None)
    p.add_argument(
        "--data",
        default=None,
        help="calibration data: mnist5k (default) | digits | imagefolder:PATH (its train split; "
        "also the teacher's training data); for an mmdet config: mnist-det | mnist-det-small "
        "(root data/NAME or --data-root) or the path of a VOC-format root (its trainval images)",
    )
    p.add_argument("--data-root", default=None, help="an mmdet config's dataset root")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--max-float-macs",
        type=budget_number,
        metavar="N",
        help="float MACs of the whole model, e.g. 5e6 or 5M",
    )
    budget.add_argument(
        "--max-ops", type=budget_number, metavar="N", help="OPs = float MACs + BOPs/64"
    )
    budget.add_argument(
        "--min-binary-share",
        type=share,
        metavar="F",
        help="share of conv/linear MACs that is binary, e.g. 0.95",
    )
    budget.add_argument(
        "--max-size", type=budget_number, metavar="BYTES", help="packed size in bytes, e.g. 3M"
    )
    p.add_argument(
        "--teacher",
        default=None,
        help="trained float run dir or checkpoint (default: train one for --teacher-epochs); "
        "for an mmdet config, required: a float detector checkpoint (mmdet-train's .pth)",
    )
    p.add_argument("--teacher-epochs", type=positive_int, default=None, help="(timm) default 3")
    p.add_argument(
        "--calibration-size",
        type=positive_int,
        default=128,
        help="calibration images (default 128)",
    )
    p.add_argument("--seed", type=int, default=0, help="picks the calibration images")
    p.add_argument(
        "--report-dir",
        type=output_dir,
        default=None,
        help="report folder (default: OUTPUT without .yaml, plus .search)",
    )
    p.add_argument("-o", "--output", required=True, type=output_file, help="recipe YAML to write")
    p.set_defaults(func=cmd_search)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``autobin`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.command, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
