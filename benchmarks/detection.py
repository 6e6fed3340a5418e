"""Detection benchmark: float detectors vs their binarized students, with and without distillation.

On ``mnist-det-small`` (real mnist5k digits on 128x128 textured images in a VOC layout; see
``autobin mmdet-data mnist-det-small``), for each family of the detectors shipped in
``configs/mmdet/``, three runs through mmengine's Runner in this one process:

1. the float detector from scratch (``--float-iters`` iterations);
2. its binarized student (SSD: recipe ``ssd-adabin``; RetinaNet: ``det-adabin``) started from
   run 1's weights and finetuned with distillation from run 1 as the frozen teacher (neck
   features + head class scores) for ``--student-iters`` iterations;
3. the same student without distillation, same budget and schedule.

Printed side by side: VOC mAP@0.5 on the test split (mmdet's VOCMetric), the curve of mAP vs
iteration (``--evals`` evaluations per run), seconds per iteration (wall and this process's CPU
time, measured in the same process), the share of conv MACs that is binary, and the detector's
size as float32 vs the packed zoo entry. mmengine's logs stay in each run's work dir; the
terminal gets one line per phase.

    OMP_NUM_THREADS=1 python benchmarks/detection.py --threads 1 --jobs 2   # both families
    OMP_NUM_THREADS=1 python benchmarks/detection.py --family ssd --threads 1 --jobs 2 \\
        --publish ssd128_r18.adabin_mnist-det-small --zoo-dir zoo   # the committed zoo entry
    python benchmarks/detection.py --demo --out runs/demo-det          # make demo-det

``--demo`` (``make demo-det``) runs the SSD story at 1,200 float + 900 student iterations (about
12 minutes on 2 cores; float mAP@0.5 about 0.8, binary student about 0.6): data, float
training, binarization, distillation finetuning, evaluation, the table, a zoo entry loaded back
with identical outputs and ``detections.png`` (float and binary detections on the same test
images). A rerun starts from a clean output folder (the data is kept when it is the same
dataset).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "mmdet"
FAMILIES = {
    "ssd": (CONFIGS / "ssd128_r18_mnist-det-small.py", "ssd-adabin"),
    "retinanet": (CONFIGS / "retinanet128_r18_mnist-det-small.py", "det-adabin"),
}
DATASET = "mnist-det-small"
INPUT_SIZE = 128
MEANINGFUL_MAP = 0.3
"""Below this float mAP a ratio of two mAPs says nothing and is not printed."""
BENCHMARK = {"float_iters": 2500, "student_iters": 2000, "evals": 5}
DEMO = {"float_iters": 1200, "student_iters": 900, "evals": 1, "family": "ssd"}
OUTPUTS = ("runs", "zoo", "detections.png", "results.json")
"""What a run writes under --out (removed at the start of every run; the data is kept)."""


# ----------------------------------------------------------------------------- terminal
class Terminal:
    """Progress lines to the real terminal while mmengine's output goes to log files."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._fd = os.dup(1)
        self.start = time.perf_counter()

    def line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        os.write(self._fd, f"[{elapsed / 60:5.1f} min] {text}\n".encode())

    def text(self, text: str) -> None:
        os.write(self._fd, (text + "\n").encode())

    @contextlib.contextmanager
    def quiet(self, log: Path):
        """Send everything written to stdout/stderr (mmengine's logs too) to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(log, "ab") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    family: str
    name: str
    iters: int
    config: str = ""
    checkpoint: str = ""
    map50: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)
    wall_s_per_iter: float = 0.0
    cpu_s_per_iter: float = 0.0
    binary_mac_share: float = 0.0
    float32_bytes: int = 0
    packed_bytes: int = 0
    losses: dict[str, float] = field(default_factory=dict)


def _schedule(iters: int, evals: int, lr: float, batch: int, seed: int) -> dict:
    warmup = max(1, min(100, iters // 10))
    interval = max(1, iters // max(1, evals))
    return {
        "train_cfg": {
            "_delete_": True,
            "type": "IterBasedTrainLoop",
            "max_iters": iters,
            "val_interval": interval,
        },
        "train_dataloader.batch_size": batch,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_dataloader.sampler": {"_delete_": True, "type": "InfiniteSampler", "shuffle": True},
        "val_dataloader.batch_size": 8,
        "val_dataloader.num_workers": 0,
        "test_dataloader.batch_size": 8,
        "test_dataloader.num_workers": 0,
        "optim_wrapper": {
            "_delete_": True,
            "type": "OptimWrapper",
            "optimizer": {"type": "AdamW", "lr": lr, "weight_decay": 1e-4},
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
                "end": iters,
                "T_max": iters - warmup,
                "eta_min": lr * 0.01,
            },
        ],
        "default_hooks.checkpoint": {
            "_delete_": True,
            "type": "CheckpointHook",
            "by_epoch": False,
            "interval": iters,
        },
        "default_hooks.logger.interval": 25,
        "log_processor.by_epoch": False,
        "randomness.seed": seed,
    }


def _scalars(work: Path) -> list[dict]:
    """mmengine's logged scalars of the run in ``work`` (one dict per logged step)."""
    files = sorted(work.glob("*/vis_data/scalars.json"))
    if not files:
        return []
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def _train(run: Run, cfg, args, out: Path, term: Terminal) -> Run:
    import torch

    from autobin.integrations.mmdet import train, write_config

    lr = args.lr if run.name == "float" else args.student_lr
    cfg.merge_from_dict(_schedule(run.iters, args.evals, lr, args.batch, args.seed))
    work = out / "runs" / run.family / run.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_config(cfg, work.parent / f"{run.name}.py")
    run.config = str(work.parent / f"{run.name}.py")
    term.line(f"{run.family} {run.name}: training {run.iters} iterations (log: {work})")
    wall, cpu = time.perf_counter(), time.process_time()
    with term.quiet(work / "terminal.log"):
        torch.manual_seed(args.seed)
        train(run.config, work_dir=work)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _measure(run, work, wall, cpu, args)
    (work / "run.json").write_text(json.dumps(asdict(run), indent=2) + "\n")
    return run


def _eval_points(iters: int, interval: int) -> list[int]:
    """The iterations after which mmengine's IterBasedTrainLoop evaluates: every ``interval``
    iterations and after the last one."""
    points = list(range(interval, iters + 1, interval))
    return points if points[-1] == iters else [*points, iters]


def _measure(run: Run, work: Path, wall: float | None, cpu: float | None, args) -> None:
    """Fill ``run``'s mAP, curve, timings and last losses from mmengine's logs in ``work``."""
    scalars = _scalars(work)
    maps = [float(s["pascal_voc/mAP"]) for s in scalars if "pascal_voc/mAP" in s]
    # mmengine logs the evaluations at step 0: their iterations come from the run's schedule
    from mmengine.config import Config

    interval = Config.fromfile(run.config).train_cfg.val_interval
    evals = list(zip(_eval_points(run.iters, interval), maps))
    run.curve = evals
    run.map50 = evals[-1][1] if evals else float("nan")
    steps = [float(s["time"]) for s in scalars if "loss" in s and "time" in s]
    # mmengine's IterTimerHook: wall seconds of each training iteration (evaluations excluded),
    # averaged over the logged windows; CPU: this process's CPU seconds over the whole run
    # (all threads, the evaluations included) per iteration
    fallback = wall / run.iters if wall is not None else float("nan")
    run.wall_s_per_iter = sum(steps) / len(steps) if steps else fallback
    run.cpu_s_per_iter = cpu / run.iters if cpu is not None else float("nan")
    last = [s for s in scalars if "loss" in s]
    if last:
        run.losses = {k: round(float(v), 4) for k, v in last[-1].items() if k.startswith("loss")}
    run.checkpoint = str(work / f"iter_{run.iters}.pth")
    print_curve = f", curve {run.curve}" if len(run.curve) > 1 else ""
    args.term.line(
        f"{run.family} {run.name}: mAP@0.5 {run.map50:.4f} after {run.iters} iterations, "
        f"{run.wall_s_per_iter:.2f} s/iter wall, {run.cpu_s_per_iter:.2f} s/iter CPU "
        f"({len(evals)} evaluations of {args.test} test images{print_curve})"
    )


def _reuse_float(family: str, source: Path, args) -> Run:
    """The float run of an earlier benchmark in ``source`` (``--float-from``), not retrained."""
    work = source / "runs" / family / "float"
    saved = work / "run.json"
    if saved.is_file():
        run = Run(**json.loads(saved.read_text()))
        run.curve = [tuple(point) for point in run.curve]
        args.term.line(f"{family} float: reused from {work} (mAP@0.5 {run.map50:.4f})")
        return run
    checkpoints = sorted(work.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    if not checkpoints:
        raise FileNotFoundError(f"--float-from {source}: no float checkpoint in {work}")
    run = Run(family, "float", int(checkpoints[-1].stem.split("_")[1]))
    run.config = str(work.parent / "float.py")
    _measure(run, work, None, None, args)
    return run


def _binary_totals(config_path: str) -> dict:
    """The binarize report's totals of the student in ``config_path`` (MACs, sizes)."""
    from mmengine.config import Config

    import autobin
    from autobin.integrations.mmdet import BinarizedDetector

    cfg = Config.fromfile(config_path)
    options = {k: v for k, v in cfg.model.items() if k not in ("type", "teacher", "distill")}
    model = BinarizedDetector(**options, teacher=None, distill=None)
    return dict(autobin.info(model).report.totals)


def _student_run(family: str, name: str, distill, teacher: str, data: Path, args, out: Path,
                 term: Terminal) -> Run:  # fmt: skip
    import autobin.integrations.mmdet as integration

    config, recipe = FAMILIES[family]
    cfg = integration.make_binarized_config(
        config, recipe, teacher=teacher, distill=distill, data_root=data
    )
    cfg.model.input_size = [INPUT_SIZE, INPUT_SIZE]  # the example image to binarize with
    run = _train(Run(family, name, args.student_iters), cfg, args, out, term)
    with term.quiet(out / "runs" / family / f"{name}_report.log"):
        totals = _binary_totals(run.config)
    run.binary_mac_share = float(totals["binary_mac_share"])
    run.float32_bytes = int(totals["float_size_bytes"])
    run.packed_bytes = int(totals["packed_size_bytes"])
    return run


def _family(family: str, data: Path, args, out: Path, term: Terminal) -> list[Run]:
    """The float run, then the students; with ``--jobs 2`` the two students train at the same
    time in two processes (forked from this one, each with ``--threads`` threads), so that
    both are timed under the same machine load."""
    import autobin.integrations.mmdet as integration

    config, _ = FAMILIES[family]
    if args.float_from:
        runs = [_reuse_float(family, Path(args.float_from), args)]
    else:
        float_cfg = integration.float_config(config, data_root=data)
        runs = [_train(Run(family, "float", args.float_iters), float_cfg, args, out, term)]
    teacher = runs[0].checkpoint
    students = [("binary_distill", {})] + ([] if args.demo else [("binary_plain", None)])
    jobs = [(family, name, distill, teacher, data, args, out, term) for name, distill in students]
    if args.jobs > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            runs += list(pool.map(_student_run, *zip(*jobs)))
    else:
        runs += [_student_run(*job) for job in jobs]
    return runs


# ----------------------------------------------------------------------------- zoo, figure
def _publish(run: Run, teacher: Run, name: str, zoo_dir: Path, args) -> tuple[Path, dict]:
    from autobin.integrations.mmdet import publish_detector

    metrics = {
        "map50_mnist_det_small_test": round(run.map50, 4),
        "teacher_map50_mnist_det_small_test": round(teacher.map50, 4),
        "binary_mac_share": round(run.binary_mac_share, 4),
    }
    schedule = {
        "teacher": f"{teacher.iters} iterations from scratch, batch {args.batch}, AdamW lr "
        f"{args.lr}, linear warm-up + cosine decay",
        "student": f"{run.iters} iterations from the teacher's weights, batch {args.batch}, "
        f"AdamW lr {args.student_lr}, linear warm-up + cosine decay, distillation (neck "
        "features MSE + head class-score KL, weights 1) from the frozen teacher",
        "threads": args.threads,
        "seed": args.seed,
    }
    dataset = {
        "name": DATASET,
        "split": "test",
        "images": args.test,
        "command": f"autobin mmdet-data {DATASET} PATH",
    }
    path = publish_detector(
        run.config,
        run.checkpoint,
        name,
        zoo_dir=zoo_dir,
        metrics=metrics,
        dataset=dataset,
        teacher={
            "config": Path(FAMILIES[run.family][0]).name,
            "map50": metrics["teacher_map50_mnist_det_small_test"],
        },
        schedule=schedule,
        overwrite=args.overwrite,
    )
    return path, json.loads((path / "config.json").read_text())


def _student(run: Run):
    from autobin.integrations.mmdet.publish import load_student

    return load_student(run.config, run.checkpoint)


def _float_detector(run: Run):
    from autobin.integrations.mmdet import build_float_detector, load_config
    from autobin.integrations.mmdet.config import detector_config
    from autobin.integrations.mmdet.model import load_float_weights

    detector = build_float_detector(detector_config(load_config(run.config)))
    load_float_weights(detector, run.checkpoint)
    return detector.eval()


def _identical_after_load(student, name: str, zoo_dir: Path, data: Path) -> bool:
    """Load the entry back and compare its raw head outputs with the student's on test images."""
    import torch
    from mmengine.dataset import pseudo_collate

    from autobin import zoo
    from autobin.integrations.mmdet.evaluate import test_pipeline, voc_dataset

    loaded = zoo.load(name, zoo_dir=zoo_dir)
    dataset = voc_dataset(data, "test", test_pipeline((INPUT_SIZE, INPUT_SIZE)))
    images = [dataset[i] for i in range(min(8, len(dataset)))]
    batch = loaded.data_preprocessor(pseudo_collate(images), False)
    with torch.no_grad():
        a = student._forward(batch["inputs"])
        b = loaded._forward(batch["inputs"])
    flat_a = [t for level in a for t in level]
    flat_b = [t for level in b for t in level]
    return len(flat_a) == len(flat_b) and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b))


def _figure(teacher: Run, student: Run, student_model, data: Path, out: Path) -> Path:
    from autobin.data.mnist_det import read_manifest
    from autobin.integrations.mmdet.figures import draw_side_by_side, predict_images

    indices = list(range(min(6, read_manifest(data)["images"]["test"])))
    paths, float_dets = predict_images(_float_detector(teacher), data, indices)
    _, binary_dets = predict_images(student_model, data, indices)
    columns = {
        f"float teacher (mAP@0.5 {teacher.map50:.3f})": float_dets,
        f"binary student (mAP@0.5 {student.map50:.3f})": binary_dets,
    }
    return draw_side_by_side(paths, columns, out / "detections.png")


# ----------------------------------------------------------------------------- report
def _table(runs: list[Run]) -> str:
    """One row per run; size: the float32 state dict of the float detector, the packed size
    (1-bit weights + float32 rest, as the zoo stores it) of the binary students."""
    float32 = {r.family: r.float32_bytes for r in runs if r.float32_bytes}
    lines = [
        f"{'family':10s} {'run':15s} {'iters':>6s} {'mAP@0.5':>8s} {'s/iter wall':>12s} "
        f"{'s/iter CPU':>11s} {'binary MACs':>12s} {'size MiB':>9s}"
    ]
    for r in runs:
        size = float32.get(r.family, float("nan")) if r.name == "float" else r.packed_bytes
        lines.append(
            f"{r.family:10s} {r.name:15s} {r.iters:6d} {r.map50:8.4f} {r.wall_s_per_iter:12.2f} "
            f"{r.cpu_s_per_iter:11.2f} {100 * r.binary_mac_share:11.1f}% {size / 2**20:9.2f}"
        )
    return "\n".join(lines)


def _summary(runs: list[Run]) -> list[str]:
    lines = []
    for family in dict.fromkeys(r.family for r in runs):
        by = {r.name: r for r in runs if r.family == family}
        teacher, distill, plain = by["float"], by.get("binary_distill"), by.get("binary_plain")
        if teacher.map50 < MEANINGFUL_MAP:
            lines.append(
                f"{family}: the float detector reached mAP {teacher.map50:.4f} < "
                f"{MEANINGFUL_MAP}: not trained enough to compare; raise --float-iters"
            )
            continue
        if distill is not None:
            lines.append(
                f"{family}: binary+distill / float mAP = "
                f"{distill.map50 / teacher.map50:.3f} (goal >= 0.92)"
            )
        if distill is not None and plain is not None:
            lines.append(
                f"{family}: binary+distill - binary mAP = "
                f"{100 * (distill.map50 - plain.map50):+.1f} points (goal >= +1)"
            )
        for r in (distill, plain):
            if r is not None and len(r.curve) > 1:
                curve = ", ".join(f"{it}: {m:.3f}" for it, m in r.curve)
                lines.append(f"{family} {r.name} mAP vs iteration: {curve}")
        if len(teacher.curve) > 1:
            curve = ", ".join(f"{it}: {m:.3f}" for it, m in teacher.curve)
            lines.append(f"{family} float mAP vs iteration: {curve}")
    return lines


def _clean(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-det", help="output folder")
    p.add_argument("--data", default=None, help=f"{DATASET} root (default OUT/data)")
    p.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    p.add_argument("--float-iters", type=int, default=None, help="default 2500 (demo 1200)")
    p.add_argument("--student-iters", type=int, default=None, help="default 2000 (demo 900)")
    p.add_argument("--evals", type=int, default=None, help="evaluations per run: the mAP curve")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-3, help="float training learning rate")
    p.add_argument("--student-lr", type=float, default=2e-3, help="binary students' rate")
    p.add_argument("--threads", type=int, default=2, help="torch threads per process")
    p.add_argument("--jobs", type=int, default=1, help="2: train the two students at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test", type=int, default=None, help="test images (preset's: 200)")
    p.add_argument("--trainval", type=int, default=None, help="trainval images (preset's)")
    p.add_argument("--publish", default=None, metavar="NAME",
                   help="publish the distilled student of the (first) family")  # fmt: skip
    p.add_argument("--zoo-dir", default=None, help="zoo for --publish (default OUT/zoo)")
    p.add_argument("--overwrite", action="store_true", help="replace the zoo entry NAME")
    p.add_argument("--float-from", default=None, metavar="OUT",
                   help="reuse the float runs of an earlier benchmark's output folder")  # fmt: skip
    p.add_argument("--demo", action="store_true", help="make demo-det (see the docstring)")
    args = p.parse_args(argv)
    families = list(FAMILIES) if args.family == "all" else [args.family]
    defaults = DEMO if args.demo else BENCHMARK
    for key in ("float_iters", "student_iters", "evals"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.demo:
        families = [DEMO["family"] if args.family == "all" else args.family]
        args.publish = args.publish or f"{families[0]}128_r18.adabin_demo"

    import torch

    from autobin.data.mnist_det import preset, write_preset

    torch.set_num_threads(args.threads)
    term = Terminal()
    args.term = term
    out = Path(args.out)
    _clean(out)
    overrides = {k: v for k, v in (("trainval", args.trainval), ("test", args.test)) if v}
    spec = preset(DATASET, **overrides)
    args.test = spec.test
    data = write_preset(DATASET, args.data or out / "data", **overrides)
    term.line(
        f"data: {DATASET}, {spec.trainval} trainval / {spec.test} test images of "
        f"{spec.image_size}x{spec.image_size} px at {data}"
    )
    term.line(
        f"budget: float {args.float_iters} / students {args.student_iters} iterations at "
        f"batch {args.batch}, {args.threads} thread{'' if args.threads == 1 else 's'} per process"
    )

    runs: list[Run] = []
    for family in families:
        runs += _family(family, data, args, out, term)

    results: dict = {"runs": [asdict(r) for r in runs]}
    first = {r.name: r for r in runs if r.family == families[0]}
    if args.publish:
        zoo_dir = Path(args.zoo_dir) if args.zoo_dir else out / "zoo"
        teacher, distilled = first["float"], first["binary_distill"]
        with term.quiet(out / "runs" / "publish.log"):
            path, entry = _publish(distilled, teacher, args.publish, zoo_dir, args)
            student = _student(distilled)
            same = _identical_after_load(student, args.publish, zoo_dir, data)
        term.line(
            f"zoo: published {args.publish} to {path} ({entry['weights']['file_bytes'] / 2**20:.2f}"
            f" MiB); loaded back: {'identical outputs' if same else 'OUTPUTS DIFFER'}"
        )
        results["zoo"] = {"entry": str(path), "identical_after_load": same}
        if args.demo:
            with term.quiet(out / "runs" / "figure.log"):
                png = _figure(teacher, distilled, student, data, out)
            term.line(f"figure: float and binary detections side by side in {png}")
            results["figure"] = str(png)
    term.text("")
    term.text(_table(runs))
    term.text("")
    for line in _summary(runs):
        term.text(line)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    term.line(f"done; results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
