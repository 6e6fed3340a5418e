"""Lower layers never import higher ones (the layering in the README)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "autobin"
LAYER = {
    "atomic": 0,
    "errors": 0,
    "model_info": 0,
    "module_tools": 0,
    "timm_metadata": 0,
    "version": 0,
    "quantizers": 1,
    "nn": 2,
    "models": 2,
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Fully qualified autobin modules ``path`` imports, at module level or inside functions (a
    deferred import hides a cycle from Python, not from the reader)."""
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if not module.startswith("autobin"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if _exists(sub) else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("autobin"))
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def test_no_module_imports_the_top_level_package():
    """``import autobin`` (or ``from autobin import x``/``from .. import __version__``) inside
    the package reaches upward to everything; lower layers import what they need directly."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if (
            path.parts[-2:] == ("autobin", "__init__.py")
            or "cli" in path.relative_to(PACKAGE).parts
        ):
            continue  # the top level itself and the CLI (the highest layer, its public API user)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "autobin" for a in node.names):
                offenders.append(str(path.relative_to(PACKAGE)))
            if isinstance(node, ast.ImportFrom) and node.module == "autobin":
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_no_import_cycles():
    graph = {_module_name(p): _imported_modules(p) for p in PACKAGE.rglob("*.py")}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for other in sorted(graph.get(node, ())):
            if other == node or node.startswith(other + "."):
                continue  # a package's own __init__ (always loaded first) is no cycle
            visit(other, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [], done)
    assert cycles == []


def test_every_error_class_derives_from_autobin_error():
    """Every exception class autobin defines (and so raises on purpose) is an AutobinError."""
    import importlib

    from autobin.errors import AutobinError

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if ".integrations." in name or name.endswith("__main__"):
            continue  # mmdet's stack is optional here; its errors are checked in tests/mmdet
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Exception)
                and not issubclass(value, Warning)
                and value.__module__ == name
                and not issubclass(value, AutobinError)
            ):
                offenders.append(f"{name}.{value.__name__}")
    assert offenders == []
