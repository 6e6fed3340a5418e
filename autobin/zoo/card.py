"""Model card (``README.md``) of a zoo entry, in the layout of Hugging Face Hub model repos.

The card is YAML front matter (``library_name``, ``license``, ``tags``, ``datasets``,
``metrics`` and a ``model-index`` with the results) followed by a Markdown body: the metrics
table, the share of MACs that run binary, BOPs / FLOPs / OPs (``OPs = BOPs / 64 + FLOPs``), the
size in float32 against the packed file, and how to load the model. It is rendered from the
entry's ``config.json`` dict only, so it can always be regenerated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

TASK = "image-classification"
TASKS = {"mmdet": ("object-detection", "Object Detection")}
"""The task of an entry by its architecture's library (default: image classification)."""


def _task(config: Mapping[str, Any]) -> tuple[str, str]:
    library = (config.get("architecture") or {}).get("library")
    return TASKS.get(library, (TASK, "Image Classification"))


def _dataset_name(dataset: Any) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if isinstance(dataset, Mapping):
        for key in ("name", "id", "type"):
            if isinstance(dataset.get(key), str):
                return dataset[key]
    return None


def _human(n: float | int | None, unit: str = "") -> str:
    if n is None:
        return "n/a"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def _bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.2f} MiB ({n:,} bytes)"


def front_matter(config: Mapping[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata (Hub model-card fields) as a dict."""
    arch = config.get("architecture") or {}
    recipe = config.get("recipe") or {}
    metrics = config.get("metrics") or {}
    dataset = _dataset_name(config.get("dataset"))
    task, task_name = _task(config)
    tags = ["autobin", "binary-neural-network", "1-bit", task]
    method = recipe.get("method") if isinstance(recipe, Mapping) else None
    for tag in (method, recipe.get("name") if isinstance(recipe, Mapping) else None):
        if isinstance(tag, str) and tag not in tags:
            tags.append(tag)
    if arch.get("library"):
        tags.append(str(arch["library"]))
    meta: dict[str, Any] = {
        "library_name": "autobin",
        "license": config.get("license") or "other",
        "tags": tags,
        "pipeline_tag": task,
    }
    if dataset:
        meta["datasets"] = [dataset]
    if metrics:
        meta["metrics"] = sorted(metrics)
        result: dict[str, Any] = {"task": {"type": task, "name": task_name}}
        if dataset:
            result["dataset"] = {"name": dataset, "type": dataset}
        result["metrics"] = [{"type": k, "value": v, "name": k} for k, v in sorted(metrics.items())]
        meta["model-index"] = [{"name": config.get("name", "model"), "results": [result]}]
    return meta


def efficiency_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(quantity, value)`` rows for the card's efficiency table."""
    totals = ((config.get("report") or {}).get("totals")) or {}
    weights = config.get("weights") or {}
    bops, flops = totals.get("bops"), totals.get("flops")
    ops = totals.get("ops")
    if ops is None and bops is not None and flops is not None:
        ops = bops / 64 + flops
    share = totals.get("binary_mac_share")
    float_bytes = weights.get("float32_bytes") or totals.get("float_size_bytes")
    file_bytes = weights.get("file_bytes")
    ratio = f"{float_bytes / file_bytes:.1f}x" if float_bytes and file_bytes else "n/a"
    return [
        ("share of MACs binary", f"{100 * share:.1f} %" if share is not None else "n/a"),
        ("BOPs (binary MACs)", _human(bops)),
        ("FLOPs (float MACs)", _human(flops)),
        ("OPs = BOPs/64 + FLOPs", _human(ops)),
        ("size, float32 state", _bytes(float_bytes)),
        (f"size, packed file ({weights.get('float_dtype', 'float32')} float parts)",
         _bytes(file_bytes)),
        ("compression", ratio),
    ]  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return "`" + json.dumps(value, sort_keys=True) + "`"


def render_card(config: Mapping[str, Any]) -> str:
    """Render the ``README.md`` model card of an entry from its config dict."""
    name = config.get("name", "model")
    arch = config.get("architecture") or {}
    weights = config.get("weights") or {}
    meta = yaml.safe_dump(front_matter(config), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
        f"# {name}",
        "",
        f"1-bit binarized `{arch.get('name', '?')}` ({arch.get('library', '?')}, arguments "
        f"`{json.dumps(arch.get('kwargs') or {}, sort_keys=True)}`), published with autobin "
        f"{config.get('autobin_version', '?')}. Weights of the binary layers are stored packed, "
        "8 per byte, with their per-channel binary sets; the rest of the model is float.",
        "",
        "## Results",
        "",
    ]
    metrics = config.get("metrics") or {}
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("No metrics were recorded.")
    lines += ["", "## Efficiency", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in efficiency_rows(config)]
    lines += [
        "",
        f"The packed file holds {weights.get('binary_layers', 'n/a')} binary layers "
        f"({_human(weights.get('binary_params'))} binary weights in "
        f"{_bytes(weights.get('sign_bytes'))} of signs).",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {_fmt(config.get('dataset'))} |",
        f"| teacher | {_fmt(config.get('teacher'))} |",
        f"| schedule | {_fmt(config.get('schedule'))} |",
        f"| input size | {_fmt(config.get('input_size'))} |",
        f"| recipe sha256 | `{config.get('recipe_sha256') or 'n/a'}` |",
        "",
        "The full recipe is embedded in `config.json`.",
        "",
        "## How to load",
        "",
        "```python",
        "import autobin.zoo",
        *(
            ["import autobin.integrations.mmdet  # rebuilds mmdet detectors (the [mmdet] extra)"]
            if (config.get("architecture") or {}).get("library") == "mmdet"
            else []
        ),
        "",
        f'model = autobin.zoo.load("{name}")  # checks sha256, rebuilds, loads; eval mode',
        "```",
        "",
        f"Check the files without loading: `autobin zoo verify {name}`. Loading runs no code "
        "from the files: weights are safetensors and the configuration is JSON.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["efficiency_rows", "front_matter", "render_card"]
