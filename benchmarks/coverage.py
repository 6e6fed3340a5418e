"""Coverage sweep of autobin.binarize over timm's (or torchvision's) architectures.

For every model (a seeded sample, a pattern, a list, or with ``--all`` the whole
``timm.list_models()`` registry, large models included; with ``--family torchvision`` every
classification model of ``torchvision.models``), with random weights at the model's own input size
(as its model family reads it: timm's ``pretrained_cfg['input_size']``): binarize it, run forward
and backward at batch 2 and record success or the failure and its cause. A model counts as a
success only if it binarizes, runs forward with the float model's output shape, runs backward with
finite gradients, and binarizes a real share of its weights (binary MAC share > 0: a model that
binarizes nothing is a failure). Each model has a time budget (``--budget``, seconds; running out
is a failure of cause "timeout"). Prints the success rate (goal: at least 99.5% of the registry),
the failures grouped by cause, the slowest models, and resnet18's binarize time measured in the
same run (goal: under 1 s).

    python benchmarks/coverage.py --sample 60 --json coverage.json
    python benchmarks/coverage.py --all --jobs 16 --device cuda --json coverage.json
    python benchmarks/coverage.py --all --shard 0/4        # a quarter of the registry
    python benchmarks/coverage.py --models resnet18 vit_tiny_patch16_224 --recipe auto
    python benchmarks/coverage.py --family torchvision --all --recipe auto --json tv.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import time
import traceback
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import sweep_pool
import timm
import torch

import autobin
from autobin.graph import binarize, family_of

GOAL_SUCCESS = 0.995
GOAL_RESNET18_S = 1.0
START = time.perf_counter()


@dataclass
class Result:
    model: str
    status: str = "skipped"  # ok | failed | skipped
    stage: str = ""  # create | binarize | forward | shape | backward | grads | share | timeout
    reason: str = ""
    recipe: str = ""
    params: int | None = None
    input_size: list[int] | None = None
    binarize_s: float | None = None
    total_s: float | None = None
    binary_mac_share: float | None = None
    binarized_layers: int | None = None
    maxout: int | None = None
    untraced_regions: int | None = None
    finite_grads: bool | None = None
    extra: dict = field(default_factory=dict)


class Timeout(BaseException):
    """The model ran past its time budget (a BaseException: code under test must not catch it)."""


def _one_line(exc: BaseException) -> str:
    return sweep_pool.one_line(exc, 200)


def cause(res: Result) -> str:
    """A failure's cause: its stage and its message with numbers and names abstracted."""
    return sweep_pool.failure_cause(res.stage, res.reason, 120)


FAMILIES = ("timm", "torchvision")


def create(name: str, family: str) -> torch.nn.Module:
    """A 10-class model of ``family`` with random weights."""
    if family == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=10)
    return timm.create_model(name, pretrained=False, num_classes=10)


def list_names(family: str, pattern: str) -> list[str]:
    if family == "torchvision":
        import fnmatch

        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        return [n for n in names if fnmatch.fnmatch(n, pattern or "*")]
    return timm.list_models(pattern or "*")


def count_params(name: str, family: str = "timm") -> int | None:
    """Parameter count without allocating weights (meta device); None if that fails."""
    try:
        with torch.device("meta"):
            model = create(name, family)
        return sum(p.numel() for p in model.parameters())
    except Exception:
        return None


def _binarize_timed(model, recipe: str):
    start = time.perf_counter()
    result = binarize(model, recipe)
    return result, time.perf_counter() - start


def _alarm(_signum, _frame):
    raise Timeout("ran past the per-model time budget")


def run_model(
    name: str,
    recipe: str,
    max_params: float,
    batch: int,
    budget: float,
    device: str,
    family: str = "timm",
) -> Result:
    res = Result(name)
    start = time.perf_counter()
    res.params = count_params(name, family)
    if res.params is not None and res.params > max_params:
        res.reason = f"{res.params / 1e6:.1f}M params > --max-params"
        return res
    use_alarm = budget > 0 and hasattr(signal, "SIGALRM")
    if use_alarm:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, budget)
    res.status, res.stage = "failed", "create"
    try:
        torch.manual_seed(0)
        model = create(name, family).to(device)
        res.params = sum(p.numel() for p in model.parameters())
        size = family_of(model).input_shape(model)
        res.input_size = list(size)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *size, generator=gen).to(device)
        with torch.no_grad():
            expected = model.eval()(x).shape
        model.train()

        res.stage = "binarize"
        res.recipe = "adabin" if recipe == "auto" else recipe
        result, res.binarize_s = _binarize_timed(model, res.recipe)
        share = autobin.info(result).report.totals["binary_mac_share"]
        if recipe == "auto" and share < 0.5:
            # few conv MACs to binarize (a transformer / MLP): keep whichever binarizes more
            full, full_s = _binarize_timed(model, "adabin-full")
            if autobin.info(full).report.totals["binary_mac_share"] > share:
                result, res.binarize_s, res.recipe = full, full_s, "adabin-full"
        totals = autobin.info(result).report.totals
        res.binary_mac_share = totals["binary_mac_share"]
        res.binarized_layers = totals["binarized_layers"]
        res.maxout = totals["maxout"]
        res.untraced_regions = totals["untraced_regions"]
        del model

        res.stage = "forward"
        out = result.train()(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        res.stage = "shape"
        if tuple(out.shape) != tuple(expected):
            raise RuntimeError(f"output shape {tuple(out.shape)} != float {tuple(expected)}")
        res.stage = "backward"
        out.float().square().mean().backward()
        grads = [p.grad for p in result.parameters() if p.grad is not None]
        res.finite_grads = all(bool(torch.isfinite(g).all()) for g in grads)
        res.stage = "grads"
        if not res.finite_grads:
            raise RuntimeError("non-finite gradients")
        res.stage = "share"
        if not res.binary_mac_share:
            raise RuntimeError("binarizes nothing (binary MAC share 0)")
    except Timeout as exc:
        res.stage, res.reason = "timeout", f"{exc} ({budget:.0f}s, during {res.stage})"
        return _done(res, start)
    except Exception as exc:
        res.reason = _one_line(exc)
        res.extra["trace"] = traceback.format_exc(limit=-3)
        return _done(res, start)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
    res.status, res.stage = "ok", ""
    return _done(res, start)


def _done(res: Result, start: float) -> Result:
    res.total_s = time.perf_counter() - start
    return res


def _worker_init(threads: int) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)


def resnet18_binarize_time(repeats: int = 3) -> float:
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    binarize(model)  # warm-up
    times = []
    for _ in range(repeats):
        times.append(_binarize_timed(model, "adabin")[1])
    return statistics.median(times)


def _table(rows: list[tuple], head: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    widths[-1] = 0
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), *(fmt(r) for r in rows)])


def select_models(args: argparse.Namespace) -> list[str]:
    names = args.models or list_names(args.family, args.filter)
    if not args.models and not args.all and args.sample:
        names = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))
    if args.shard:
        index, count = (int(v) for v in args.shard.split("/"))
        names = names[index::count]
    if args.deadline:  # a run cut short by the deadline is then a random sample
        random.Random(args.seed).shuffle(names)
    return names


def run_all(names: list[str], args: argparse.Namespace) -> list[Result]:
    """Run every model, ``--jobs`` at a time (each in a worker process), printing progress."""
    run_args = (args.recipe, args.max_params, args.batch, args.budget, args.device, args.family)
    results: list[Result] = []

    def report(i: int, res: Result) -> None:
        results.append(res)
        share = f"{res.binary_mac_share:.2f}" if res.binary_mac_share is not None else "-"
        took = f"{res.binarize_s:.2f}s" if res.binarize_s is not None else "-"
        print(
            f"[{i}/{len(names)}] {res.model}: {res.status} {res.recipe} share={share} "
            f"binarize={took} total={res.total_s or 0:.1f}s {res.reason}",
            flush=True,
        )

    if args.jobs <= 1:
        _worker_init(torch.get_num_threads())
        for i, name in enumerate(names, 1):
            if args.deadline and time.perf_counter() - START > args.deadline:
                print(f"--deadline reached: {len(names) - len(results)} models not run")
                break
            report(i, run_model(name, *run_args))
        return results

    # a worker that dies (out of memory, a crash) costs its model, never the sweep (see
    # sweep_pool); a model past twice its budget (the in-process alarm did not stop it) is killed
    def collect(index: int, outcome) -> None:
        name = names[index]
        if isinstance(outcome, Result):
            return report(len(results) + 1, outcome)
        if isinstance(outcome, sweep_pool.Crashed):
            res = Result(name, "failed", "crash", f"the worker process {outcome.how}")
        elif isinstance(outcome, sweep_pool.TimedOut):
            res = Result(name, "failed", "timeout", f"worker killed after {outcome.seconds:.0f}s")
        else:
            res = Result(name, "failed", "crash", outcome.text)
        report(len(results) + 1, res)

    # --deadline counts from the start of the script (perf_counter); the pool counts monotonic
    left = START + args.deadline - time.perf_counter() if args.deadline else None
    not_run = sweep_pool.run_pool(
        run_model, [(name, *run_args) for name in names], jobs=args.jobs,
        task_limit=2 * args.budget + 60 if args.budget > 0 else float("inf"),
        on_result=collect, initializer=_worker_init,
        initargs=(sweep_pool.cpu_threads_per_job(args.jobs),),
        deadline=None if left is None else time.monotonic() + left,
    )  # fmt: skip
    if not_run:
        print(f"--deadline reached: {len(not_run)} models not run", flush=True)
    return results


def summarize(results: list[Result], wall: float, r18: float | None) -> float:
    tried = [r for r in results if r.status != "skipped"]
    ok = [r for r in tried if r.status == "ok"]
    failed = [r for r in tried if r.status == "failed"]
    rate = len(ok) / len(tried) if tried else 0.0
    print("\n== coverage ==")
    print(
        f"models: {len(results)}  tried: {len(tried)}  skipped: {len(results) - len(tried)}  "
        f"ok: {len(ok)}  failed: {len(failed)}  wall: {wall:.0f}s"
    )
    print(
        f"success rate (binarize + forward + backward + binary share > 0): {100 * rate:.2f}% "
        f"(goal >= {100 * GOAL_SUCCESS:.1f}%: {'met' if rate >= GOAL_SUCCESS else 'NOT met'})"
    )
    timeouts = [r for r in failed if r.stage == "timeout"]
    if timeouts:
        rest = len(tried) - len(timeouts)
        print(
            f"of which time budget ran out: {len(timeouts)}; success rate of the models that "
            f"finished within it: {100 * len(ok) / rest if rest else 0.0:.2f}% ({len(ok)}/{rest})"
        )
    if ok:
        shares = [r.binary_mac_share for r in ok]
        print(
            f"binary MAC share: median {statistics.median(shares):.2f}, min "
            f"{min(shares):.2f}; below 0.5: {sum(s < 0.5 for s in shares)}"
        )
        untraced = [r.model for r in ok if r.untraced_regions]
        print(f"with untraced regions (partial tracing): {len(untraced)}")
    if r18 is not None:
        print(
            f"resnet18 binarize time (median of 3, warm): {r18:.3f}s "
            f"(goal < {GOAL_RESNET18_S:.0f}s: {'met' if r18 < GOAL_RESNET18_S else 'NOT met'})"
        )
    timed = sorted((r for r in tried if r.binarize_s is not None), key=lambda r: -r.binarize_s)
    if timed:
        print("\n== slowest binarize ==")
        rows = [(r.model, r.recipe, f"{r.binarize_s:.2f}s", r.binarized_layers) for r in timed[:10]]
        print(_table(rows, ("model", "recipe", "binarize", "binary layers")))
    if failed:
        by_cause: dict[str, list[str]] = defaultdict(list)
        for r in failed:
            by_cause[cause(r)].append(r.model)
        print("\n== failures by cause ==")
        rows = [(len(m), c, ", ".join(sorted(m)[:6]) + (" ..." if len(m) > 6 else ""))
                for c, m in sorted(by_cause.items(), key=lambda kv: -len(kv[1]))]  # fmt: skip
        print(_table(rows, ("count", "cause", "models")))
        print("\n== failures ==")
        rows = [(r.model, r.recipe or "-", r.stage, r.reason) for r in failed]
        print(_table(rows, ("model", "recipe", "stage", "reason")))
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="the whole registry, any size")
    parser.add_argument("--family", choices=FAMILIES, default="timm", help="model registry")
    parser.add_argument("--sample", type=int, default=0, help="random sample of N models (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--models", nargs="*", help="explicit model names (overrides --sample)")
    parser.add_argument("--filter", default="", help="timm.list_models pattern, e.g. 'resnet*'")
    parser.add_argument("--shard", default="", metavar="I/N", help="every N-th model from I")
    parser.add_argument(
        "--max-params", type=float, default=None, help="skip bigger models (default 30M; "
        "--all: no limit unless given)",
    )  # fmt: skip
    parser.add_argument(
        "--recipe",
        default="auto",
        help="recipe name; 'auto': adabin, or adabin-full where adabin binarizes < 50%% of "
        "the MACs and adabin-full binarizes more",
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--budget", type=float, default=600, help="seconds per model")
    parser.add_argument("--jobs", type=int, default=1, help="models run in parallel processes")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--deadline", type=float, default=0, help="stop after this many seconds in all and "
        "report the models finished by then (run in a seeded random order)",
    )  # fmt: skip
    parser.add_argument("--no-resnet18-time", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="write per-model results here")
    args = parser.parse_args(argv)
    if args.max_params is None:
        args.max_params = float("inf") if args.all else 30e6

    warnings.filterwarnings("ignore")
    names = select_models(args)
    start = time.perf_counter()
    results = run_all(names, args)
    r18 = None if args.no_resnet18_time else resnet18_binarize_time()
    wall = time.perf_counter() - start
    rate = summarize(results, wall, r18)

    if args.json:
        tried = [r for r in results if r.status != "skipped"]
        summary = {
            "models": len(results),
            "tried": len(tried),
            "ok": sum(r.status == "ok" for r in results),
            "failed": sum(r.status == "failed" for r in results),
            "success_rate": rate,
            "resnet18_binarize_s": r18,
            "wall_s": wall,
            "args": vars(args),
            "torch": torch.__version__,
            "timm": timm.__version__,
        }
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "results": [asdict(r) for r in results]}, f, indent=1)
        print(f"\nwrote {args.json}")
    sys.stdout.flush()
    code = 0 if rate >= GOAL_SUCCESS else 1
    if args.deadline:
        os._exit(code)  # do not wait for workers still busy with models past the deadline
    return code


if __name__ == "__main__":
    sys.exit(main())
