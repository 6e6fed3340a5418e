"""Training step time of binary models relative to the float model, measured side by side.

Each step is forward + backward + Adam step on one fixed batch; models are interleaved over the
repeats so machine noise hits all of them alike, and the median is reported.

    .venv/bin/python benchmarks/step_time.py                       # mnist5k-sized, CPU
    .venv/bin/python benchmarks/step_time.py --device cuda --input-size 3 224 224 --batch 128
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import timm
import torch
import torch.nn.functional as F

import autobin

VARIANTS = {
    "adabin (ede)": ("adabin", "ede"),
    "adabin (ste)": ("adabin", "ste"),
    "bnn (sign)": ("bnn", None),
    "xnor": ("xnor", None),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time(model, x, y, amp_dtype=None) -> float:
    """Seconds for one training step (forward, backward, Adam step)."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    _sync(x.device)
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    ctx = torch.autocast(x.device.type, amp_dtype) if amp_dtype else contextlib.nullcontext()
    with ctx:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    _sync(x.device)
    return time.perf_counter() - start


def measure_step_ratios(models: dict, x, y, repeats: int, amp_dtype=None) -> dict:
    """Median step time of each model and its ratio to ``models["float"]``."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        step_time(model, x, y, amp_dtype)
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(step_time(model, x, y, amp_dtype))
    med = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"ms": 1000 * med[name], "ratio": med[name] / med["float"]} for name in med}


def build_models(arch: str, input_size, num_classes: int, device) -> dict:
    float_model = timm.create_model(arch, num_classes=num_classes, in_chans=input_size[0])
    float_model.to(device)
    example = (torch.zeros(2, *input_size, device=device),)
    models = {"float": float_model}
    for name, (recipe, estimator) in VARIANTS.items():
        model = autobin.binarize(float_model, recipe, example_inputs=example)
        if estimator:
            for m in model.modules():
                if isinstance(m, autobin.nn.BinaryLayer):
                    m.weight_estimator = estimator
        models[name] = model
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, nargs=3, default=[1, 28, 28])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    models = build_models(args.arch, args.input_size, 10, device)
    print(f"{args.arch}, input {args.input_size}, device {device}, amp {args.amp}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    for batch in args.batch:
        x = torch.randn(batch, *args.input_size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        res = measure_step_ratios(models, x, y, args.repeats, amp)
        print(f"batch {batch}:")
        for name, r in res.items():
            print(f"  {name:16s} {r['ms']:9.1f} ms   {r['ratio']:5.2f}x float")


if __name__ == "__main__":
    main()
