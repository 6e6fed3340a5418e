"""Lower layers never import higher ones (the layering in the README)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "autobin"
LAYER = {
    "atomic": 0,
    "errors": 0,
    "float_reference": 0,
    "quantizers": 1,
    "nn": 2,
    "recipes": 3,
    "graph": 4,
    "data": 5,
    "train": 5,
    "zoo": 6,
    "compat": 6,
    "deploy": 6,
    "pipelines": 7,
    "integrations": 7,
    "search": 7,
    "cli": 8,
}
FORBIDDEN_PAIRS = {("train", "graph"), ("data", "graph"), ("zoo", "train"), ("data", "train")}


def _autobin_imports(path: Path) -> set[str]:
    """First-level autobin subpackages a module imports (relative or absolute)."""
    found: set[str] = set()
    own = path.relative_to(PACKAGE).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(own[:-1])[: len(own) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.add(parts[0])
                else:
                    found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("autobin."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("autobin."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in LAYER
                 or p.stem in LAYER)  # fmt: skip


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(path):
    part = path.relative_to(PACKAGE).parts[0]
    own = part if part in LAYER else path.stem
    for other in _autobin_imports(path):
        if other not in LAYER or other == own:
            continue
        assert LAYER[other] <= LAYER[own], f"{path}: layer {own} imports higher layer {other}"
        assert (own, other) not in FORBIDDEN_PAIRS, f"{path}: {own} must not import {other}"
