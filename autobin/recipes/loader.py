"""Finding and reading recipe files: built-in names, YAML paths, and ``extends``.

YAML is read with ``yaml.safe_load`` only. Before that, the document's node tree is inspected
(``yaml.compose`` builds no objects): any tag other than plain mappings, lists, strings,
numbers, booleans and null (e.g. ``!!python/object``) is rejected, and so are duplicate keys,
which plain YAML loading would silently resolve to the last value.

``extends: <name or path>`` makes a recipe start from another: a built-in name, or a path
relative to the extending file. ``defaults``, ``activations`` and ``shortcuts`` are merged key
by key (the extending file wins); its ``rules`` are evaluated before the inherited ones.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import did_you_mean
from .errors import RecipeError, Where, choices, key_path
from .recipe import Recipe, assemble
from .validate import parse_document

_YAML_SUFFIXES = (".yaml", ".yml")
_SAFE_TAGS = {
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")
}


def builtin_dir() -> Path:
    """The folder holding the shipped recipes (``autobin.builtin_recipes``)."""
    try:
        root = importlib.resources.files("autobin.builtin_recipes")
        path = Path(str(root))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    import autobin

    return Path(autobin.__file__).resolve().parent.parent / "recipes"


def list_recipes() -> list[str]:
    """Names of the built-in recipes, sorted (e.g. ``["adabin", "adabin-full", ...]``)."""
    folder = builtin_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def _walk(node: yaml.Node, path: str, where: Where, lines: dict[str, int]) -> None:
    """Reject unsafe tags and duplicate keys; record the line of every key path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in _SAFE_TAGS:
        raise RecipeError(
            where.source,
            path,
            f"YAML tag {node.tag!r} is not allowed: recipes are read with yaml.safe_load and "
            "may only hold plain data",
            allowed="mappings, lists, strings, numbers, booleans and null",
            fix="remove the tag (quote the value if it is meant as a string)",
            line=node.start_mark.line + 1,
        )
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = key_path(path, str(key))
            if key in seen:
                raise RecipeError(
                    where.source,
                    child,
                    f"duplicate key {key!r}",
                    allowed="each key once per mapping",
                    fix="remove one of the two entries",
                    line=key_node.start_mark.line + 1,
                )
            seen.add(key)
            _walk(key_node, child, where, lines)
            _walk(value_node, child, where, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, key_path(path, i), where, lines)


def read_yaml(path: Path) -> tuple[Any, Where]:
    """Read one recipe file safely.

    Returns:
        The document as plain data, and its :class:`Where` (with key-path line numbers).

    Raises:
        RecipeError: Unreadable file, YAML syntax error, unsafe tag, duplicate key.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(
            source, "", f"cannot read the recipe file: {exc.strerror or exc}"
        ) from None
    lines: dict[str, int] = {}
    where = Where(source, lines)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, "", where, lines)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RecipeError(
            source,
            "",
            f"not valid YAML: {exc}",
            allowed="a YAML mapping",
            fix="fix the YAML syntax at the position shown",
            line=mark.line + 1 if mark is not None else None,
        ) from None
    if data is None:
        raise where.error(
            "",
            "the recipe file is empty",
            allowed="a mapping with schema_version: 1 and rules",
            fix="see the built-in recipes (autobin.recipes.list_recipes()) for an example",
        )
    return data, where


def _resolve(name_or_path: str | os.PathLike[str], base: Path | None) -> Path:
    """Map a built-in name or a path (relative to ``base``) to a file."""
    text = os.fspath(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, os.PathLike)
        or text.endswith(_YAML_SUFFIXES)
        or "/" in text
        or os.sep in text
    )
    if not looks_like_path:
        names = list_recipes()
        if text in names:
            return builtin_dir() / f"{text}.yaml"
        hint = did_you_mean(text, names)
        raise RecipeError(
            str(base) if base else "load_recipe",
            "extends" if base else "name_or_path",
            f"unknown recipe {text!r}" + (f"; {hint}" if hint else ""),
            allowed=f"a built-in recipe ({choices(names)}) or a path to a .yaml file",
            fix="pick a built-in name, or pass the path to your own recipe file",
        )
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base.parent / path
    if not path.is_file():
        raise RecipeError(
            str(base) if base else str(path),
            "extends" if base else "",
            f"recipe file not found: {path}",
            allowed=f"a built-in recipe ({choices(list_recipes())}) or an existing .yaml file",
            fix="check the path (relative paths in 'extends' start at the extending file)",
        )
    return path


def _load_file(path: Path, stack: tuple[Path, ...]) -> Recipe:
    real = path.resolve()
    if real in stack:
        chain = " -> ".join(str(p) for p in (*stack, real))
        raise RecipeError(
            str(path),
            "extends",
            f"circular 'extends': {chain}",
            allowed="an 'extends' chain that ends in a recipe without 'extends'",
            fix="remove 'extends' from one of these files",
        )
    data, where = read_yaml(path)
    parts = parse_document(data, where)
    parent = None
    if parts.extends is not None:
        parent = _load_file(_resolve(parts.extends, path), (*stack, real))
    return assemble(parts, parent, where, default_name=path.stem)


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """Load and validate a recipe.

    Args:
        name_or_path: A built-in name (see :func:`list_recipes`, e.g. ``"adabin"``), or a path
            to a ``.yaml`` file.

    Returns:
        The validated :class:`Recipe`, with any ``extends`` resolved.

    Raises:
        RecipeError: Unknown name, missing file, unsafe or invalid YAML, or invalid content;
            the message names the file, the key path, the allowed values and a fix.
    """
    return _load_file(_resolve(name_or_path, None), ())
