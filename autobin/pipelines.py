"""End-to-end workflows that compose the layers: float model -> binarize -> finetune -> zoo.

This sits above the graph pass, training and the zoo (which never import each other) and below
the CLI, which only parses arguments and calls these functions.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import AutobinError
from .graph import binarize
from .model_info import info
from .recipes import RecipeLike, as_recipe

DEMO_ARCH = "resnet18"
DEMO_DATA = "mnist5k"
DEMO_ZOO_NAME = "resnet18.adabin_mnist5k"


def create_float_model(arch: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(arch, **kwargs)`` with clear errors for unknown names and downloads."""
    import timm

    from . import models  # noqa: F401  registers autobin's CIFAR architectures in timm

    if arch not in timm.list_models():
        close = timm.list_models(f"*{arch}*")[:10]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm architecture {arch!r}{hint} (see timm.list_models())")
    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as exc:
        if pretrained:
            raise RuntimeError(
                f"could not download pretrained weights for {arch!r} ({exc}); this machine may "
                "have no network: use pretrained=False and train the float model first "
                "(autobin train trains a float teacher when no --teacher is given)"
            ) from exc
        raise


def save_binarized(
    model: nn.Module,
    recipe: RecipeLike,
    path: str | Path,
    *,
    example_inputs: Any = None,
    arch_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Binarize a timm model and write it as a one-file packed checkpoint.

    The file (:mod:`autobin.zoo.single_file`: packed signs, binary sets, float tensors, latent
    weights and the config that rebuilds the model; nothing pickled) loads back with
    ``autobin.load(path)``. An existing ``path`` is refused before any work unless
    ``overwrite``.
    """
    from .zoo import save_file
    from .zoo.single_file import check_free_file

    check_free_file(path, overwrite)
    bnn = binarize(model, recipe, example_inputs=example_inputs)
    return save_file(bnn, path, arch_kwargs=arch_kwargs, overwrite=overwrite)


def _teacher_checkpoint(path: str | Path) -> Path:
    """The checkpoint file a teacher path names (a run directory's best.pt or last.pt)."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt" if (p / "best.pt").exists() else p / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {str(p)!r} does not exist; give a float run directory (with "
            "best.pt or last.pt) or a checkpoint file, or leave --teacher out to train one"
        )
    return p


def _load_teacher_state(path: str | Path) -> dict[str, torch.Tensor]:
    from .train.checkpoint import verify_checkpoint_file

    p = _teacher_checkpoint(path)
    verify_checkpoint_file(p)  # a damaged file is refused, naming it
    state = torch.load(p, map_location="cpu", weights_only=True)
    return state["model"] if isinstance(state, dict) and "model" in state else state


@dataclasses.dataclass
class RunResult:
    """What :func:`train_binary` produced."""

    out_dir: Path
    teacher_acc: float | None
    student_acc: float
    student_best_acc: float | None
    report: dict[str, Any]
    teacher: nn.Module | None = dataclasses.field(repr=False)
    student: nn.Module = dataclasses.field(repr=False)

    def summary(self, latency: tuple[float, float] | None = None) -> str:
        """The side-by-side table; ``latency``: single-image seconds of the float teacher and
        the deployed student (:func:`autobin.deploy.bench.single_image_latency`)."""
        t = self.report
        teacher_acc = "-" if self.teacher_acc is None else f"{self.teacher_acc:.2f}"
        rows = [
            f"{'':24s}{'float teacher':>16s}{'binary student':>16s}",
            f"{'test accuracy (%)':24s}{teacher_acc:>16s}{self.student_acc:16.2f}",
            f"{'binary share of MACs':24s}{'0.0%':>16s}{100 * t['binary_mac_share']:15.1f}%",
            f"{'model size':24s}{_mib(t['float_size_bytes']):>16s}"
            f"{_mib(t['packed_size_bytes']) + ' packed':>16s}",
        ]
        if latency is not None:
            teacher_s, student_s = latency
            rows.append(
                f"{'1-image latency':24s}{teacher_s * 1e3:13.2f} ms{student_s * 1e3:13.2f} ms"
                f" deployed, {teacher_s / student_s:.1f}x faster"
            )
        return "\n".join([*rows, f"run directory: {self.out_dir}"])


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def train_binary(
    arch: str,
    *,
    recipe: RecipeLike = "adabin",
    data: str = DEMO_DATA,
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    teacher: str | Path | None = None,
    out_dir: str | Path = "runs/train",
    config: Any = None,
    teacher_config: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    compile: bool | None = None,
    from_scratch: bool = False,
    teacher_arch: str | None = None,
) -> RunResult:
    """Train (or load) a float teacher, binarize it, and finetune the student by distillation.

    Writes ``out_dir/teacher/`` (unless ``teacher`` is given or ``from_scratch``), the student
    run in ``out_dir`` (``best.pt``, ``last.pt``, ``metrics.json``, plots) and
    ``out_dir/run.json`` with everything the zoo needs to rebuild the model (architecture,
    arguments, recipe, data, schedule).

    Every argument (recipe, data, configs, teacher path, run directory) is checked before any
    training starts. Under ``torchrun`` the whole workflow runs on every process with one
    process group (see :mod:`autobin.train.distributed`); rank 0 writes the files.

    Args:
        epochs: student epochs; ``None`` takes the config's (10 without a config).
        teacher_epochs: float teacher epochs; ``None`` takes the student's.
        config: the student's schedule: a :class:`~autobin.train.TrainConfig`, a mapping, a
            YAML path or a built-in config's name (:func:`autobin.train.list_train_configs`).
        compile: ``torch.compile`` the models being trained (overrides both configs).
        overwrite: replace earlier runs in ``out_dir`` (and ``out_dir/teacher``).
        from_scratch: no float teacher: binarize the architecture's random initialization and
            train it with the config's labels loss (as the released AdaBin CIFAR and one-step
            ImageNet scripts do). The config must not distil (``kd_weight`` and
            ``feature_weight`` 0); ``teacher`` must not be given.
        teacher_arch: the teacher's timm architecture when it differs from the student's (the
            two-step schedule distils ResNet-18 from a ResNet-34); the student then starts
            from its own random initialization, and ``teacher`` (if given) holds a float
            ``teacher_arch`` model. By default the teacher is a float ``arch`` model that also
            initializes the student.
    """
    from .data import load_dataset
    from .train import distributed_session, evaluate, finetune, load_train_config, train_float
    from .train.outputs import prepare_run_dir

    out = Path(out_dir)
    # --- everything is checked before any work starts
    recipe = as_recipe(recipe)
    train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
    teacher_path = _teacher_checkpoint(teacher) if teacher is not None else None
    if epochs is None and config is None:
        epochs = 10
    cfg = load_train_config(config, epochs=epochs, seed=seed, compile=compile)
    if from_scratch:
        _check_from_scratch(cfg, teacher, teacher_arch)
    float_objective = {"kd_weight": 0.0, "ce_weight": 1.0}
    if teacher_config is None or isinstance(teacher_config, dict):
        teacher_config = {**float_objective, **(teacher_config or {})}
    teacher_cfg = load_train_config(
        teacher_config, epochs=teacher_epochs or cfg.epochs, seed=seed, compile=compile
    )
    image, _ = train_set[0]
    arch_kwargs = {"num_classes": train_set.num_classes, "in_chans": int(image.shape[0])}
    # the seed decides the teacher's initial weights too: the same seed gives the same run
    torch.manual_seed(seed)
    float_model = create_float_model(arch, **arch_kwargs)
    teacher_net = float_model  # the float teacher, and the student's starting point
    if teacher_arch is not None:
        teacher_net = create_float_model(teacher_arch, **arch_kwargs)
    if not resume and not overwrite:  # refuse now rather than after training a teacher
        prepare_run_dir(out, resume=False, overwrite=False)
        if teacher is None and not from_scratch:
            prepare_run_dir(out / "teacher", resume=False, overwrite=False)
    # --- the work
    with distributed_session(cfg.device):
        if teacher_path is not None:
            teacher_net.load_state_dict(_load_teacher_state(teacher_path))
        elif not from_scratch:
            train_float(teacher_net, train_set, test_set, config=teacher_cfg,
                        out_dir=out / "teacher", resume=resume, overwrite=overwrite)  # fmt: skip
            teacher_net.load_state_dict(_load_teacher_state(out / "teacher"))
        float_model.eval()
        teacher_net.eval()
        example = (torch.zeros(2, *image.shape),)
        student = binarize(float_model, recipe, example_inputs=example)
        teacher_model = None if from_scratch else teacher_net
        result = finetune(student, teacher_model, train_set, test_set, config=cfg, out_dir=out,
                          resume=resume, overwrite=overwrite)  # fmt: skip
    if result.best_checkpoint is not None:
        student.load_state_dict(_load_teacher_state(result.best_checkpoint))
    teacher_acc = None if teacher_model is None else evaluate(teacher_model, test_set)["acc"]
    student_acc = evaluate(student, test_set)["acc"]
    return RunResult(
        out_dir=out,
        teacher_acc=teacher_acc,
        student_acc=student_acc,
        student_best_acc=result.best_val_acc,
        report=info(student).report.to_dict()["totals"],
        teacher=teacher_model,
        student=student,
    )


class RunSetupError(AutobinError, ValueError):
    """Arguments of a training workflow that contradict each other."""


def _check_from_scratch(cfg: Any, teacher: str | Path | None, teacher_arch: str | None) -> None:
    if teacher is not None or teacher_arch is not None:
        raise RunSetupError(
            "training from scratch (--from-scratch) has no teacher, but a teacher (--teacher or "
            "--teacher-arch) was given; drop one of the two"
        )
    if cfg.kd_weight > 0 or cfg.feature_weight > 0:
        raise RunSetupError(
            "training from scratch (--from-scratch) has no teacher, but the config distils "
            f"(kd_weight {cfg.kd_weight}, feature_weight {cfg.feature_weight}); set both to 0 "
            "and ce_weight > 0, or train with a teacher (leave --from-scratch out)"
        )


def search_arch(
    arch: str,
    *,
    data: str,
    output: str | Path,
    recipe: RecipeLike = "adabin",
    teacher: str | Path | None = None,
    teacher_epochs: int = 3,
    num_classes: int | None = None,
    in_chans: int | None = None,
    input_size: tuple[int, int] | None = None,
    report_dir: str | Path | None = None,
    seed: int = 0,
    **search_options: Any,
) -> Any:
    """``autobin search ARCH``: the float timm model (trained or loaded), then :func:`search`.

    The data decides the model's input channels and classes unless given. Without ``teacher``
    a float model is trained for ``teacher_epochs`` into ``REPORT_DIR/teacher`` first (the
    sensitivity of an untrained model says nothing). ``search_options`` are the keyword
    arguments of :func:`autobin.search` (the budget, ``calibration_size``, ...).
    """
    from .data import load_dataset
    from .search import make_budget, search
    from .train import train_float

    budgets = {
        k: search_options.get(k)
        for k in ("max_float_macs", "max_ops", "min_binary_share", "max_size")
    }
    make_budget(**budgets)  # a bad budget fails before any work
    as_recipe(recipe)
    output = Path(output)
    folder = Path(report_dir) if report_dir else output.with_name(output.stem + ".search")
    train_set = load_dataset(data, "train", image_size=input_size, in_chans=in_chans)
    teacher_path = _teacher_checkpoint(teacher) if teacher is not None else None
    image, _ = train_set[0]
    classes = num_classes or getattr(train_set, "num_classes", None)
    kwargs = {"in_chans": int(image.shape[0]), **({"num_classes": classes} if classes else {})}
    torch.manual_seed(seed)
    model = create_float_model(arch, **kwargs)
    if teacher_path is not None:
        model.load_state_dict(_load_teacher_state(teacher_path))
    else:
        print(
            f"no --teacher: training a float {arch} for {teacher_epochs} epochs into "
            f"{folder / 'teacher'} (pass --teacher RUN_DIR to reuse a trained one)"
        )
        config = {"kd_weight": 0.0, "ce_weight": 1.0, "lr": 2e-3, "batch_size": 128, "seed": seed}
        train_float(
            model,
            train_set,
            None,
            epochs=teacher_epochs,
            config=config,
            out_dir=folder / "teacher",
            overwrite=True,
        )
    model.eval()
    return search(
        model, train_set, recipe, output=output, report_dir=folder, seed=seed, **search_options
    )


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    zoo_dir: str | Path | None = None,
    teacher_epochs: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    data: str = DEMO_DATA,
) -> dict[str, Any]:
    """The README's main job: the whole story on mnist5k, end to end.

    Trains a float timm resnet18 teacher on mnist5k, binarizes it with ``adabin``, finetunes
    with distillation, evaluates both, prints a side-by-side table, publishes the student to
    the zoo (``OUT/zoo`` unless ``zoo_dir`` is given), loads it back and checks that the loaded
    model gives the same outputs and accuracy. A run earlier in ``out_dir`` is replaced.
    ``data`` may name a slice (``"mnist5k[:512]"``) for a quick look.
    """
    from . import zoo
    from .data import load_dataset
    from .deploy import deploy
    from .deploy.bench import single_image_latency
    from .train import evaluate

    start = time.time()
    out = Path(out_dir)
    demo = load_train_demo_settings()
    res = train_binary(
        DEMO_ARCH,
        recipe="adabin",
        data=data,
        epochs=epochs or demo["epochs"],
        teacher_epochs=teacher_epochs or demo["teacher_epochs"],
        out_dir=out,
        config=demo["config"],
        teacher_config=demo["teacher_config"],
        seed=seed,
        overwrite=True,  # the demo's own output directory: each `make demo` starts afresh
    )
    test_set = load_dataset(data, "test")
    deployed = deploy(res.student.eval())
    latency = single_image_latency(res.teacher, deployed, test_set[0][0])
    print()
    print(res.summary(latency=latency))
    zoo_path = Path(zoo_dir) if zoo_dir is not None else out / "zoo"
    metrics = {"top1_mnist5k_test": round(res.student_acc, 2),
               "teacher_top1_mnist5k_test": round(res.teacher_acc, 2)}  # fmt: skip
    entry = zoo.publish_run(out, DEMO_ZOO_NAME, zoo_dir=zoo_path, metrics=metrics, overwrite=True)
    loaded = zoo.load(DEMO_ZOO_NAME, zoo_dir=zoo_path)
    loaded_acc = evaluate(loaded, test_set)["acc"]
    x = torch.stack([test_set[i][0] for i in range(8)])
    res.student.eval()
    with torch.no_grad():
        same = torch.equal(loaded(x), res.student(x))
    print(f"published {DEMO_ZOO_NAME} to {entry}; loaded back: accuracy {loaded_acc:.2f}%, "
          f"outputs {'identical' if same else 'DIFFERENT'} to the trained model")  # fmt: skip
    print(f"demo finished in {(time.time() - start) / 60:.1f} min")
    if not same or abs(loaded_acc - res.student_acc) > 1e-9:
        raise RuntimeError("the model loaded from the zoo does not reproduce the trained model")
    return {"teacher_acc": res.teacher_acc, "student_acc": res.student_acc,
            "loaded_acc": loaded_acc, "zoo_entry": str(entry),
            "latency_s": {"teacher": latency[0], "deployed_student": latency[1]}}  # fmt: skip


def load_train_demo_settings() -> dict[str, Any]:
    """Epochs and training configs of the demo (sized to finish in minutes on 2 CPU cores)."""
    # batch 128 as in AdaBin's CIFAR recipe; students: distribution loss only (ReActNet)
    return {
        "teacher_epochs": 5,
        "epochs": 12,
        "teacher_config": {"kd_weight": 0.0, "ce_weight": 1.0, "lr": 2e-3, "batch_size": 128},
        "config": {"kd_weight": 1.0, "ce_weight": 0.0, "lr": 2e-3, "batch_size": 128},
    }
