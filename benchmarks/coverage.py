"""Coverage sweep of autobin.binarize over timm's architectures.

For every model (all of ``timm.list_models()``, or a seeded random sample), with random weights:
binarize it, run forward and backward at batch 2 and the model's input size, and record
success or the failure reason, the share of conv/linear MACs binarized, the time ``binarize``
took (binarize only) and whether every gradient was finite. Prints the success rate (goal: at
least 99% of architectures binarize and run forward and backward), the slowest models, a failure
table and resnet18's binarize time measured in the same run (goal: under 1 s).

    python benchmarks/coverage.py --sample 60 --json coverage.json
    python benchmarks/coverage.py --models resnet18 vit_tiny_patch16_224 --recipe auto
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field

import timm
import torch

from autobin.graph import binarize

GOAL_SUCCESS = 0.99
GOAL_RESNET18_S = 1.0


@dataclass
class Result:
    model: str
    status: str = "skipped"  # ok | failed | skipped
    stage: str = ""  # where it failed: create | binarize | forward | backward | shape
    reason: str = ""
    recipe: str = ""
    params: int | None = None
    binarize_s: float | None = None
    binary_mac_share: float | None = None
    binarized_layers: int | None = None
    maxout: int | None = None
    untraced_regions: int | None = None
    finite_grads: bool | None = None
    extra: dict = field(default_factory=dict)


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}"


def count_params(name: str) -> int | None:
    """Parameter count without allocating weights (meta device); None if that fails."""
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=10)
        return sum(p.numel() for p in model.parameters())
    except Exception:
        return None


def _binarize_timed(model, recipe: str):
    start = time.perf_counter()
    result = binarize(model, recipe)
    return result, time.perf_counter() - start


def run_model(name: str, recipe: str, max_params: int, batch: int) -> Result:
    res = Result(name)
    res.params = count_params(name)
    if res.params is not None and res.params > max_params:
        res.reason = f"{res.params / 1e6:.1f}M params > --max-params"
        return res
    res.status, res.stage = "failed", "create"
    try:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=10)
        if res.params is None:
            res.params = sum(p.numel() for p in model.parameters())
            if res.params > max_params:
                res.status, res.reason = "skipped", f"{res.params / 1e6:.1f}M params"
                return res
        size = model.pretrained_cfg["input_size"]
        x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model.eval()(x).shape
        model.train()

        res.stage = "binarize"
        res.recipe = "adabin" if recipe == "auto" else recipe
        result, res.binarize_s = _binarize_timed(model, res.recipe)
        if recipe == "auto" and result.autobin_report.totals["binary_mac_share"] < 0.5:
            # few conv MACs to binarize (a transformer / MLP): keep whichever binarizes more
            full, full_s = _binarize_timed(model, "adabin-full")
            share = result.autobin_report.totals["binary_mac_share"]
            if full.autobin_report.totals["binary_mac_share"] > share:
                result, res.binarize_s, res.recipe = full, full_s, "adabin-full"
        totals = result.autobin_report.totals
        res.binary_mac_share = totals["binary_mac_share"]
        res.binarized_layers = totals["binarized_layers"]
        res.maxout = totals["maxout"]
        res.untraced_regions = totals["untraced_regions"]

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
    except Exception as exc:
        res.reason = _one_line(exc)
        res.extra["trace"] = traceback.format_exc(limit=-3)
        return res
    res.status, res.stage = "ok", ""
    return res


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="random sample of N models (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--models", nargs="*", help="explicit model names (overrides --sample)")
    parser.add_argument("--filter", default="", help="timm.list_models pattern, e.g. 'resnet*'")
    parser.add_argument(
        "--max-params", type=float, default=30e6, help="skip bigger models (default 30M)"
    )
    parser.add_argument(
        "--recipe",
        default="auto",
        help="recipe name; 'auto': adabin, or adabin-full where adabin binarizes < 50%% of "
        "the MACs and adabin-full binarizes more",
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="write per-model results here")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    names = args.models or timm.list_models(args.filter or "*")
    if not args.models and args.sample:
        names = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))

    start = time.perf_counter()
    results = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        res = run_model(name, args.recipe, int(args.max_params), args.batch)
        results.append(res)
        share = f"{res.binary_mac_share:.2f}" if res.binary_mac_share is not None else "-"
        took = f"{res.binarize_s:.2f}s" if res.binarize_s is not None else "-"
        print(
            f"[{i}/{len(names)}] {name}: {res.status} {res.recipe} share={share} "
            f"binarize={took} total={time.perf_counter() - t0:.1f}s {res.reason}",
            flush=True,
        )
    r18 = resnet18_binarize_time()
    wall = time.perf_counter() - start

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
        f"success rate (binarize + forward + backward): {100 * rate:.1f}% "
        f"(goal >= {100 * GOAL_SUCCESS:.0f}%: {'met' if rate >= GOAL_SUCCESS else 'NOT met'})"
    )
    if ok:
        shares = [r.binary_mac_share for r in ok]
        print(
            f"binary MAC share: median {statistics.median(shares):.2f}, min "
            f"{min(shares):.2f}; below 0.5: {sum(s < 0.5 for s in shares)}"
        )
        nonfinite = [r.model for r in ok if r.finite_grads is False]
        print(f"non-finite gradients: {len(nonfinite)} {nonfinite if nonfinite else ''}")
        untraced = [r.model for r in ok if r.untraced_regions]
        print(f"with untraced regions (partial tracing): {len(untraced)} {untraced or ''}")
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
        print("\n== failures ==")
        rows = [(r.model, r.recipe or "-", r.stage, r.reason) for r in failed]
        print(_table(rows, ("model", "recipe", "stage", "reason")))
    low = [r for r in ok if r.binary_mac_share is not None and r.binary_mac_share < 0.5]
    if low:
        print("\n== binary MAC share below 0.5 ==")
        rows = [(r.model, r.recipe, f"{r.binary_mac_share:.2f}") for r in low]
        print(_table(rows, ("model", "recipe", "share")))

    if args.json:
        summary = {
            "models": len(results),
            "tried": len(tried),
            "ok": len(ok),
            "failed": len(failed),
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
    return 0 if rate >= GOAL_SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
