"""Size of a packed 1-bit zoo checkpoint against float32 safetensors, measured side by side.

Binarizes timm ``resnet18`` (1000 classes) with recipe ``adabin`` and writes, in one temp dir:
the float model's float32 safetensors, the packed checkpoint with float32 float parts and the
packed checkpoint with float16 float parts. Prints sizes, ratios and where the bytes go.
Goals (issue "publish and load binarized checkpoints in a real 1-bit packed format"):
packed >= 10x smaller than float32, >= 16x with float16 float parts.

In recipe ``adabin`` the stem conv, the 1x1 downsample convs, the BatchNorms, the Maxouts and
the fc stay float, so the float parts bound the ratio; the "ceiling" line shows the ratio if
binary weights cost nothing at all.

Run: ``.venv/bin/python benchmarks/zoo_size.py [--arch resnet18]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from autobin.nn import AdaBinConv2d, Maxout
from autobin.zoo import binary_layers, read_packed, save_packed

GOALS = {"float32": 10.0, "float16": 16.0}


def stand_in_binarize(model: nn.Module) -> nn.Module:
    """Hand binarization of a timm ResNet like recipe adabin, used until autobin.binarize exists:
    every 3x3 conv of the residual blocks becomes AdaBinConv2d, their ReLUs become Maxout; the
    stem, 1x1 downsample convs and fc stay float."""
    for block in model.modules():
        if hasattr(block, "conv1") and hasattr(block, "conv2") and hasattr(block, "act1"):
            for conv_name, act_name in (("conv1", "act1"), ("conv2", "act2")):
                conv = getattr(block, conv_name)
                setattr(block, conv_name, AdaBinConv2d.from_float(conv))
                setattr(block, act_name, Maxout(conv.out_channels))
    return model


def binarized(arch: str) -> tuple[nn.Module, nn.Module, str]:
    float_model = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
    try:
        from autobin import binarize  # type: ignore[attr-defined]
    except ImportError:
        model = stand_in_binarize(timm.create_model(arch, pretrained=False, num_classes=1000))
        how = "hand-binarized stand-in (autobin.binarize not importable yet)"
    else:
        model = binarize(timm.create_model(arch, pretrained=False, num_classes=1000), "adabin")
        how = "autobin.binarize(model, 'adabin')"
    return float_model, model.eval(), how


def breakdown(path: Path) -> dict[str, int]:
    tensors, _ = read_packed(path)
    parts = {"signs": 0, "binary sets": 0, "float parts": 0}
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if key.endswith("weight.signs_packed"):
            parts["signs"] += nbytes
        elif key.endswith(("weight.alpha_w", "weight.beta_w")):
            parts["binary sets"] += nbytes
        else:
            parts["float parts"] += nbytes
    parts["header"] = path.stat().st_size - sum(parts.values())
    return parts


def mib(n: float) -> str:
    return f"{n / 2**20:8.2f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18")
    args = parser.parse_args()
    float_model, model, how = binarized(args.arch)
    layers = binary_layers(model)
    n_bin = sum(m.weight.numel() for m in layers.values())
    n_all = sum(t.numel() for t in float_model.state_dict().values())
    print(f"{args.arch}, 1000 classes; {how}")
    print(
        f"binary layers: {len(layers)}, binary weights {n_bin:,} of {n_all:,} state entries "
        f"({100 * n_bin / n_all:.1f} %)"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "float32.safetensors"
        save_file({k: v.contiguous() for k, v in float_model.state_dict().items()}, ref)
        ref_bytes = ref.stat().st_size
        print(f"\n{'float32 safetensors (float model)':44s} {mib(ref_bytes)}")
        for dtype in ("float32", "float16"):
            path = Path(tmp) / f"packed-{dtype}.safetensors"
            save_packed(model, path, float_dtype=dtype)
            size = path.stat().st_size
            parts = breakdown(path)
            ratio = ref_bytes / size
            ceiling = ref_bytes / (size - parts["signs"] - parts["binary sets"])
            goal = GOALS[dtype]
            verdict = "meets" if ratio >= goal else "MISSES"
            ok &= ratio >= goal
            print(
                f"{'packed, ' + dtype + ' float parts':44s} {mib(size)}   {ratio:5.2f}x smaller"
                f"   (goal >= {goal:g}x: {verdict})"
            )
            for name, nbytes in parts.items():
                print(f"    {name:40s} {mib(nbytes)}")
            print(f"    {'ceiling if binary weights were free':40s} {ceiling:8.2f}x")
    print("\nall size goals met" if ok else "\nsome size goals are not reachable with this recipe")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
