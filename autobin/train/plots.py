"""Figures written by a run (matplotlib Agg canvas: no display needed, pyplot untouched).

* ``curves.png``: train/val loss and accuracy per epoch.
* ``binary_sets.png``: for up to four binary layers, the latent weight histogram with the
  layer's weight set ``{beta_w - alpha_w, beta_w + alpha_w}`` (averaged over output channels)
  and the layer-input histogram on one validation batch with the activation set
  ``{c_a - alpha_a, c_a + alpha_a}`` (ADABIN.md sections 2 and 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write
from ..nn import BinaryLayer
from .schedules import binary_layers


def _figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on the Agg canvas, without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss and top-1 accuracy per epoch (train and val); two-step phase switch marked."""
    epochs = [r["epoch"] for r in history]
    fig = _figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    series = [
        ("train_loss", "train loss (objective)", "-"),
        ("train_ce", "train cross-entropy", "--"),
        ("val_loss", "val cross-entropy", "-"),
    ]
    for key, label, style in series:
        if history and all(key in r for r in history):
            ax_loss.plot(epochs, [r[key] for r in history], style, marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "val")):
        if history and all(key in r for r in history):
            ax_acc.plot(epochs, [r[key] for r in history], marker="o", label=label)
    switches = [r["epoch"] for r in history if r.get("phase") == 2]
    for ax in (ax_loss, ax_acc):
        if switches and any(r.get("phase") == 1 for r in history):
            ax.axvline(switches[0] - 0.5, color="gray", ls=":", label="step 2 starts")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("top-1 accuracy (%)")
    fig.tight_layout()
    return _save(fig, Path(path))


def _pick(items: list[Any], k: int) -> list[Any]:
    """Up to ``k`` items spread evenly from first to last."""
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _weight_set(layer: BinaryLayer) -> tuple[float, float]:
    """``(alpha_w, beta_w)`` averaged over output channels."""
    alpha, beta = layer.weight_binary_set()
    return float(alpha.float().mean()), float(beta.float().mean())


@torch.no_grad()
def _capture_inputs(
    model: nn.Module, layers: dict[str, nn.Module], data: Dataset, device: torch.device
) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(module: nn.Module, args: tuple[Any, ...]) -> None:
            captured[name] = args[0].detach().float().cpu()

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    try:
        model.eval()
        x, _ = next(iter(DataLoader(data, batch_size=min(64, len(data)))))
        model(x.to(device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return captured


def plot_binary_sets(
    model: nn.Module,
    val_data: Dataset | None,
    path: str | Path,
    device: torch.device | str = "cpu",
    max_layers: int = 4,
) -> Path | None:
    """Weight and activation histograms of up to ``max_layers`` binary layers with their sets.

    Returns:
        The written path, or ``None`` if the model has no binary layers.
    """
    layers = dict(_pick(list(binary_layers(model)), max_layers))
    if not layers:
        return None
    inputs = _capture_inputs(model, layers, val_data, torch.device(device)) if val_data else {}
    fig = _figure(figsize=(10, 2.6 * len(layers)))
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for row, (name, layer) in enumerate(layers.items()):
        ax_w, ax_a = axes[row]
        alpha_w, beta_w = _weight_set(layer)
        ax_w.hist(layer.weight.detach().float().cpu().flatten().numpy(), bins=80, color="C0")
        for value in (beta_w - alpha_w, beta_w + alpha_w):
            ax_w.axvline(value, color="C3", ls="--")
        ax_w.set_title(
            f"{name}: latent weights, set {{{beta_w - alpha_w:.3g}, {beta_w + alpha_w:.3g}}}",
            fontsize=9,
        )
        if name in inputs:
            alpha_a, center = layer.activation_binary_set()
            ax_a.hist(inputs[name].flatten().numpy(), bins=80, color="C1")
            for value in (center - alpha_a, center + alpha_a):
                ax_a.axvline(value, color="C3", ls="--")
            ax_a.set_title(
                f"{name}: input activations, set {{{center - alpha_a:.3g}, "
                f"{center + alpha_a:.3g}}}",
                fontsize=9,
            )
            ax_a.set_yscale("log")
        else:
            ax_a.set_axis_off()
    fig.tight_layout()
    return _save(fig, Path(path))
