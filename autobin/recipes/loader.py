"""Finding and reading recipe files: built-in names, YAML paths, and ``extends``.

YAML is read with ``yaml.safe_load`` only. Before that, the document's node tree is inspected
(``yaml.compose`` builds no objects): any tag other than plain mappings, lists, strings,
numbers, booleans and null (e.g. ``!!python/object``) is rejected, and so are duplicate keys,
which plain YAML loading would silently resolve to the last value. Reading is bounded: a file
over :data:`MAX_RECIPE_BYTES`, or a document whose aliases expand to more than
:data:`MAX_RECIPE_NODES` nodes (a "billion laughs" bomb of a few hundred bytes), is refused
before anything is built from it.

``extends: <name or path>`` makes a recipe start from another: a built-in name, or a path
relative to the extending file. ``defaults``, ``activations`` and ``shortcuts`` are merged key
by key (the extending file wins); its ``rules`` are evaluated before the inherited ones.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import did_you_mean
from .errors import RecipeError, Where, choices, key_path
from .recipe import Recipe, assemble
from .validate import parse_document

_YAML_SUFFIXES = (".yaml", ".yml")
MAX_RECIPE_BYTES = 1 << 20
"""Largest recipe file read (1 MiB; the built-in recipes are about 2 KiB)."""
MAX_RECIPE_NODES = 100_000
"""Most YAML nodes a recipe may expand to, aliases counted at every use."""
MAX_RECIPE_DEPTH = 32
"""Deepest nesting of mappings and lists in a recipe (the built-in recipes nest 5 deep)."""
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
    return Path(__file__).resolve().parents[2] / "recipes"  # a source checkout


def list_recipes() -> list[str]:
    """Names of the built-in recipes, sorted (e.g. ``["adabin", "adabin-full", ...]``)."""
    folder = builtin_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def _walk(
    node: yaml.Node, path: str, where: Where, lines: dict[str, int], budget: list[int]
) -> None:
    """Reject unsafe tags, duplicate keys and alias bombs; record the line of every key path.

    ``budget`` holds the number of nodes still allowed (aliases count at every use).
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise RecipeError(
            where.source,
            path,
            f"the document expands to more than {MAX_RECIPE_NODES} YAML nodes (aliases "
            "counted at every use): refused as a possible alias-expansion bomb",
            allowed=f"at most {MAX_RECIPE_NODES} nodes after alias expansion",
            fix="write the recipe without nested anchors/aliases (*name) that multiply",
            line=node.start_mark.line + 1,
        )
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
            _walk(key_node, child, where, lines, budget)
            _walk(value_node, child, where, lines, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, key_path(path, i), where, lines, budget)


def _too_deep(source: str, line: int | None) -> RecipeError:
    return RecipeError(
        source,
        "",
        f"mappings and lists are nested more than {MAX_RECIPE_DEPTH} levels deep",
        allowed=f"at most {MAX_RECIPE_DEPTH} levels (the built-in recipes nest 5 deep)",
        fix="check the brackets and indentation; a recipe is a short list of flat rules",
        line=line,
    )


def _check_depth(events: Any, source: str) -> None:
    """Refuse nesting past :data:`MAX_RECIPE_DEPTH` from the parser's event stream.

    The event stream is produced without recursion, so this runs before yaml's composer, which
    recurses once per level and would otherwise fail with a RecursionError.
    """
    depth = 0
    for event in events:
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_RECIPE_DEPTH:
                raise _too_deep(source, event.start_mark.line + 1)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_mapping_depth(data: Any, source: str) -> None:
    """The same limit for a recipe given as a Python mapping (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_RECIPE_DEPTH:
            raise _too_deep(source, None)
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def read_yaml(path: Path) -> tuple[Any, Where]:
    """Read one recipe file safely.

    Returns:
        The document as plain data, and its :class:`Where` (with key-path line numbers).

    Raises:
        RecipeError: Unreadable, too large or non-UTF-8 file, YAML syntax error, unsafe tag,
            duplicate key, alias bomb.
    """
    text = _read_text(path)
    source = str(path)
    lines: dict[str, int] = {}
    where = Where(source, lines)
    try:
        _check_depth(yaml.parse(text, Loader=yaml.SafeLoader), source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, "", where, lines, [MAX_RECIPE_NODES])
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


def _read_text(path: Path) -> str:
    """The file's text: at most :data:`MAX_RECIPE_BYTES`, UTF-8, errors naming the file."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(
            source,
            "",
            f"cannot read the recipe file: {exc.strerror or exc}",
            fix="check the path and its permissions",
        ) from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(
            source,
            "",
            f"the file is larger than {MAX_RECIPE_BYTES} bytes; a recipe is a few KiB of YAML",
            allowed=f"a YAML file of at most {MAX_RECIPE_BYTES} bytes",
            fix="check that this is the recipe file you meant",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(
            source,
            "",
            f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            allowed="a UTF-8 encoded YAML file",
            fix="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            line=line,
        ) from None


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


def _stat(path: Path) -> tuple[Path, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path, st.st_mtime_ns, st.st_size)


def _load_file(path: Path, stack: tuple[Path, ...]) -> Recipe:
    real = path.resolve()
    cached = _LOADED.get((real, stack))
    if cached is not None and all(_stat(dep[0]) == dep for dep in cached[1]):
        return cached[0]
    recipe, parent_deps = _parse_file(path, real, stack)
    deps = tuple(d for d in (_stat(real), *parent_deps) if d is not None)
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[(real, stack)] = (recipe, deps)
    return recipe


_LOADED: dict[tuple, tuple[Recipe, tuple]] = {}
"""Parsed recipe files by path, with the files (and their modification times and sizes) each
was built from: a file edited since, or a parent of it, is parsed again (a Recipe is
immutable)."""
_LOADED_MAX = 64


def _parse_file(path: Path, real: Path, stack: tuple[Path, ...]) -> tuple[Recipe, tuple]:
    """The recipe in ``path`` and the files its ``extends`` chain was read from."""
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
    deps: tuple = ()
    if parts.extends is not None:
        parent_path = _resolve(parts.extends, path).resolve()
        parent = _load_file(parent_path, (*stack, real))
        deps = _LOADED[(parent_path, (*stack, real))][1]
    return assemble(parts, parent, where, default_name=path.stem), deps


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
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise RecipeError(
            "load_recipe",
            "name_or_path",
            f"expected a recipe name or a path, got {type(name_or_path).__name__}",
            allowed=f"a built-in recipe ({choices(list_recipes())}) or a path to a .yaml file",
            fix="pass a name or a path; as_recipe() also takes a mapping or a Recipe",
        )
    return _load_file(_resolve(name_or_path, None), ())


RecipeLike = Recipe | str | os.PathLike | Mapping[str, Any]
"""Everything a recipe argument takes: a Recipe, a built-in name, a YAML path, a mapping."""


def as_recipe(recipe: RecipeLike) -> Recipe:
    """The :class:`Recipe` that ``recipe`` names: the one function every recipe argument uses.

    Args:
        recipe: a :class:`Recipe` (returned as is), a built-in name (``"adabin"``), a path to a
            YAML file (``str`` or ``os.PathLike``), or a mapping with the YAML file's content; a
            mapping may ``extends`` a built-in name or a path (relative to the working
            directory).

    Raises:
        RecipeError: unknown name, missing or invalid file, invalid mapping, or another type.
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    if isinstance(recipe, Mapping):
        where = Where("<dict>")
        _check_mapping_depth(recipe, where.source)
        parts = parse_document(dict(recipe), where)
        parent = None
        if parts.extends is not None:
            parent = _load_file(_resolve(parts.extends, None), ())
        return assemble(parts, parent, where, default_name="custom")
    raise RecipeError(
        "<argument>",
        "recipe",
        f"a recipe cannot be a {type(recipe).__name__}",
        allowed="a Recipe, a built-in name, a path to a .yaml file, or a mapping",
        fix=f"e.g. recipe='adabin' (built-ins: {choices(list_recipes())})",
    )
