"""The one error type of the recipe layer, and the helpers that build its messages.

Every problem found while reading a recipe raises :class:`RecipeError`. Its message always
names three things, so that a user can fix the file without reading autobin's source:

* where: the file (or ``<dict>`` for :meth:`Recipe.from_dict`) and, when known, the line;
* what: the key path inside the recipe, e.g. ``rules[2].match.kernel_size``;
* how to fix: the allowed values, and a short hint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AutobinError

TOP_LEVEL = "(top level)"


class RecipeError(AutobinError, ValueError):
    """A recipe could not be found, parsed or validated.

    Attributes:
        source: The file the problem is in, or ``<dict>`` for in-memory data.
        key_path: Where in the recipe, e.g. ``rules[2].match.kernel_size``.
        problem: What is wrong, naming the bad value.
        allowed: The valid choices or shape, when there is a closed set.
        fix: A short hint on how to fix it.
        line: The 1-based line in ``source``, when known.
    """

    def __init__(
        self,
        source: str,
        key_path: str,
        problem: str,
        allowed: str | None = None,
        fix: str | None = None,
        line: int | None = None,
    ) -> None:
        self.source = source
        self.key_path = key_path or TOP_LEVEL
        self.problem = problem
        self.allowed = allowed
        self.fix = fix
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source if self.line is None else f"{self.source}, line {self.line}"
        text = f"{where}: {self.key_path}: {self.problem}"
        if self.allowed:
            text += f"\n  allowed: {self.allowed}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.source, self.key_path, self.problem, self.allowed, self.fix, self.line),
        )


def describe_value(value: Any) -> str:
    """Return a value and its YAML type for an error message, e.g. ``'big' (a string)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list | tuple):
        kind = "a list"
    elif isinstance(value, Mapping):
        kind = "a mapping"
    else:
        kind = f"a {type(value).__name__}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def choices(values: Iterable[str]) -> str:
    """Format a closed set of choices: ``adabin | sign | xnor``."""
    return " | ".join(str(v) for v in values)


def key_path(parent: str, key: str | int) -> str:
    """Join a key path: ``key_path("rules[2]", "match") == "rules[2].match"``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


@dataclass(frozen=True)
class Where:
    """Where recipe data came from: builds :class:`RecipeError` with file and line filled in.

    Attributes:
        source: File path (as text) or ``<dict>``.
        lines: Key path -> 1-based line, as recorded while reading the YAML.
    """

    source: str
    lines: Mapping[str, int] = field(default_factory=dict)

    def error(
        self,
        path: str,
        problem: str,
        allowed: str | None = None,
        fix: str | None = None,
    ) -> RecipeError:
        """Build (not raise) an error located at ``path``."""
        return RecipeError(self.source, path, problem, allowed, fix, self.lines.get(path))
