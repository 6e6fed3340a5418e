"""Field validators for recipe documents: one value in, a checked and normalized value out.

The generic checks (a mapping with known keys, a bool, an int, a string, one of a closed set
of choices, one item or a list) and the value checks of a rule's ``match`` clause (layer
types, name patterns, kernel sizes, channel ranges). Each raises the recipe error for the key
path it is given; ``validate.py`` composes them into whole sections and documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ChoiceError, check_choice, did_you_mean
from .errors import Where, choices, describe_value, key_path
from .matching import REGEX_PREFIX, compile_name_pattern
from .schema import LAYER_TYPES

# ----------------------------------------------------------------------------- primitives


def _mapping(value: Any, path: str, where: Where, allowed_keys: tuple[str, ...]) -> Mapping:
    if not isinstance(value, Mapping):
        raise where.error(
            path,
            f"expected a mapping, got {describe_value(value)}",
            allowed=f"a mapping with keys {choices(allowed_keys)}",
        )
    for key in value:
        if key not in allowed_keys:
            hint = did_you_mean(key, allowed_keys)
            raise where.error(
                key_path(path, str(key)),
                f"unknown key {key!r}" + (f"; {hint}" if hint else ""),
                allowed=f"keys of {path or 'the top level'}: {choices(allowed_keys)}",
                fix="remove the key or correct its spelling",
            )
    return value


def _bool(value: Any, path: str, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(
            path,
            f"expected true or false, got {describe_value(value)}",
            allowed="true | false",
        )
    return value


def _int(value: Any, path: str, where: Where, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(
            path,
            f"expected an integer >= {minimum}, got {describe_value(value)}",
            allowed=f"an integer >= {minimum}",
        )
    return value


def _text(value: Any, path: str, where: Where, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise where.error(
            path,
            f"expected {'a' if allow_empty else 'a non-empty'} string, got {describe_value(value)}",
            allowed="a string (quote it if YAML reads it as another type)",
        )
    return value


def _choice(value: Any, path: str, where: Where, options: Iterable[str], what: str) -> str:
    """:func:`autobin.errors.check_choice`, its failure located in the recipe."""
    try:
        return check_choice(value, options, what)
    except ChoiceError as err:
        hint = did_you_mean(value, err.choices)
        raise where.error(
            path,
            f"unknown {what} {describe_value(value)}" + (f"; {hint}" if hint else ""),
            allowed=choices(err.choices),
        ) from None


def _one_or_list(value: Any, path: str, where: Where, what: str) -> list[tuple[str, Any]]:
    """Accept ``x`` or ``[x, ...]``; return ``(item_path, item)`` pairs."""
    if isinstance(value, list):
        if not value:
            raise where.error(
                path, f"empty list of {what}", allowed=f"one {what} or a non-empty list"
            )
        return [(key_path(path, i), item) for i, item in enumerate(value)]
    return [(path, value)]


# ----------------------------------------------------------------------------- match


def _types(value: Any, path: str, where: Where) -> tuple[str, ...]:
    return tuple(
        _choice(item, item_path, where, LAYER_TYPES, "layer type")
        for item_path, item in _one_or_list(value, path, where, "layer types")
    )


def _name_patterns(value: Any, path: str, where: Where) -> tuple[str, ...]:
    patterns = []
    for item_path, item in _one_or_list(value, path, where, "name patterns"):
        pattern = _text(item, item_path, where, allow_empty=False)
        try:
            compile_name_pattern(pattern)
        except (re.error, ValueError) as exc:
            is_regex = pattern.startswith(REGEX_PREFIX)
            raise where.error(
                item_path,
                f"bad {'regular expression' if is_regex else 'glob'} {pattern!r}: {exc}",
                allowed=(
                    "a glob such as 'blocks.*.mlp.fc1' ('*' within one dotted component, "
                    "'**' across components), or 're:' followed by a Python regular "
                    "expression that matches the whole name"
                ),
                fix="correct the pattern; escape a literal '.' or '[' in a regex with '\\'",
            ) from None
        patterns.append(pattern)
    return tuple(patterns)


_KERNEL_ALLOWED = (
    "an integer k (k x k), a pair [kh, kw], or a list of those, e.g. 3, [1, 3], [[1, 1], 3]"
)


def _kernel_pair(value: Any, path: str, where: Where) -> tuple[int, int]:
    if isinstance(value, list):
        if len(value) != 2:
            raise where.error(
                path,
                "a kernel size pair needs exactly two integers [kh, kw], "
                f"got {describe_value(value)}",
                allowed=_KERNEL_ALLOWED,
                fix="to list several sizes write each one as an item of an outer list, "
                "e.g. [[1, 1], [3, 3], [5, 5]] or [[1, 1], 3]",
            )
        return (_int(value[0], key_path(path, 0), where), _int(value[1], key_path(path, 1), where))
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(
            path, f"expected a kernel size, got {describe_value(value)}", allowed=_KERNEL_ALLOWED
        )
    k = _int(value, path, where)
    return (k, k)


def _kernel_sizes(value: Any, path: str, where: Where) -> tuple[tuple[int, int], ...]:
    """``3`` -> 3x3; ``[1, 3]`` -> 1x3; a list holding a list -> several sizes."""
    if isinstance(value, list) and any(isinstance(item, list) for item in value):
        return tuple(_kernel_pair(item, key_path(path, i), where) for i, item in enumerate(value))
    return (_kernel_pair(value, path, where),)


def _channels(value: Any, path: str, where: Where) -> tuple[int | None, int | None]:
    if isinstance(value, Mapping):
        _mapping(value, path, where, ("min", "max"))
        if not value:
            raise where.error(
                path, "empty range", allowed="an integer, or a mapping {min: a, max: b}"
            )
        low = _int(value["min"], key_path(path, "min"), where) if "min" in value else None
        high = _int(value["max"], key_path(path, "max"), where) if "max" in value else None
        if low is not None and high is not None and low > high:
            raise where.error(
                path,
                f"min ({low}) is greater than max ({high})",
                allowed="min <= max",
            )
        return (low, high)
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(
            path,
            f"expected a channel count, got {describe_value(value)}",
            allowed="an integer, or a mapping {min: a, max: b} (inclusive, either optional)",
        )
    n = _int(value, path, where)
    return (n, n)
