"""Validation: turn one recipe document (plain data from YAML or a dict) into checked parts.

Each function checks one section, names the exact key path on error, and returns normalized
values. Sections may be partial here (a recipe that ``extends`` another only gives what it
changes); ``recipe.py`` fills in the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ChoiceError, check_choice, did_you_mean
from ..nn import METHODS, method_descriptions, method_spec
from ..quantizers import ACT_FORMS, WEIGHT_ESTIMATORS
from .errors import Where, choices, describe_value, key_path
from .matching import REGEX_PREFIX, compile_name_pattern
from .schema import (
    ACTIONS,
    ACTIVATION_KINDS,
    ACTIVATION_REPLACEMENTS,
    ACTIVATION_SCOPES,
    LAYER_TYPES,
    NEVER_REPLACEABLE,
    OPTION_KEYS,
    SCHEMA_VERSION,
    Match,
    Rule,
)

TOP_LEVEL_KEYS = (
    "schema_version",
    "name",
    "description",
    "extends",
    "defaults",
    "rules",
    "activations",
    "shortcuts",
)
RULE_KEYS = ("name", "match", "action", "method", "options", "reason")
MATCH_KEYS = (
    "type",
    "name",
    "kernel_size",
    "groups",
    "depthwise",
    "pointwise",
    "in_channels",
    "out_channels",
    "first",
    "last",
    "shortcut",
)
DEFAULT_KEYS = ("method", *OPTION_KEYS)
ACTIVATION_KEYS = ("replace", "with", "scope")
SHORTCUT_KEYS = ("bireal",)
_BOOL_MATCH_KEYS = ("depthwise", "pointwise", "first", "last", "shortcut")
_BOOL_OPTIONS = ("binarize_activations", "binarize_weights")
_CHOICE_OPTIONS = {"weight_estimator": WEIGHT_ESTIMATORS, "act_form": ACT_FORMS}


@dataclass
class Parts:
    """One validated document; absent keys stay absent so ``extends`` can merge."""

    schema_version: int
    name: str | None = None
    description: str | None = None
    extends: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    rules: list[Rule] | None = None
    activations: dict[str, Any] = field(default_factory=dict)
    shortcuts: dict[str, Any] = field(default_factory=dict)


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


def parse_match(value: Any, path: str, where: Where) -> Match:
    """Validate a rule's ``match`` mapping."""
    raw = _mapping(value, path, where, MATCH_KEYS)
    fields: dict[str, Any] = {}
    if "type" in raw:
        fields["types"] = _types(raw["type"], key_path(path, "type"), where)
    if "name" in raw:
        fields["names"] = _name_patterns(raw["name"], key_path(path, "name"), where)
    if "kernel_size" in raw:
        fields["kernel_sizes"] = _kernel_sizes(
            raw["kernel_size"], key_path(path, "kernel_size"), where
        )
    if "groups" in raw:
        fields["groups"] = _int(raw["groups"], key_path(path, "groups"), where)
    for key in ("in_channels", "out_channels"):
        if key in raw:
            fields[key] = _channels(raw[key], key_path(path, key), where)
    for key in _BOOL_MATCH_KEYS:
        if key in raw:
            fields[key] = _bool(raw[key], key_path(path, key), where)
    return Match(**fields)


# ----------------------------------------------------------------------------- options


def parse_option(key: str, value: Any, path: str, where: Where) -> Any:
    """Validate one binarize option (or ``method``) value."""
    if key == "method":
        return _choice(value, path, where, method_descriptions(), "binarization method")
    if key in _BOOL_OPTIONS:
        return _bool(value, path, where)
    return _choice(value, path, where, _CHOICE_OPTIONS[key], key.replace("_", " "))


def parse_defaults(value: Any, path: str, where: Where) -> dict[str, Any]:
    """Validate the recipe-level ``defaults`` mapping (method and binarize options)."""
    raw = _mapping(value, path, where, DEFAULT_KEYS)
    return {k: parse_option(k, v, key_path(path, k), where) for k, v in raw.items()}


def parse_rule(value: Any, path: str, where: Where) -> Rule:
    """Validate one entry of ``rules``."""
    raw = _mapping(value, path, where, RULE_KEYS)
    if "action" not in raw:
        raise where.error(
            key_path(path, "action"),
            "missing required key 'action'",
            allowed=choices(ACTIONS),
            fix="add 'action: binarize' or 'action: float' to the rule",
        )
    action = _choice(raw["action"], key_path(path, "action"), where, ACTIONS, "action")
    if action == "float":
        for key in ("method", "options"):
            if key in raw:
                raise where.error(
                    key_path(path, key),
                    f"'{key}' only applies to 'action: binarize', this rule keeps layers float",
                    allowed=f"keys of a float rule: {choices(('name', 'match', 'reason'))}",
                    fix=f"remove '{key}' or change the action to binarize",
                )
    method = None
    if "method" in raw:
        method = parse_option("method", raw["method"], key_path(path, "method"), where)
    options: dict[str, Any] = {}
    if "options" in raw:
        opt_path = key_path(path, "options")
        raw_opts = _mapping(raw["options"], opt_path, where, OPTION_KEYS)
        options = {k: parse_option(k, v, key_path(opt_path, k), where) for k, v in raw_opts.items()}
        if "act_form" in options and method is not None and not method_spec(method).uses_act_form:
            users = [name for name, spec in METHODS.items() if spec.uses_act_form]
            raise where.error(
                key_path(opt_path, "act_form"),
                f"act_form does not apply to method {method!r}, which this rule uses",
                allowed=f"act_form with method: {choices(users)}",
                fix="remove act_form from this rule",
            )
        if options.get("binarize_activations") is False and not options.get(
            "binarize_weights", True
        ):
            raise where.error(
                opt_path,
                "binarize_activations and binarize_weights are both false: nothing is binarized",
                allowed="at least one of binarize_activations / binarize_weights true",
                fix="use 'action: float' to keep the layer float",
            )
    name = _text(raw["name"], key_path(path, "name"), where, False) if "name" in raw else None
    reason = _text(raw["reason"], key_path(path, "reason"), where) if "reason" in raw else None
    match = parse_match(raw["match"], key_path(path, "match"), where) if "match" in raw else Match()
    return Rule(
        match=match,
        action=action,  # type: ignore[arg-type]
        name=name,
        method=method,  # type: ignore[arg-type]
        options=tuple(sorted(options.items())),
        reason=reason,
    )


def parse_rules(value: Any, path: str, where: Where) -> list[Rule]:
    """Validate the ordered ``rules`` list; rule names must be unique."""
    if not isinstance(value, list):
        raise where.error(
            path,
            f"expected a list of rules, got {describe_value(value)}",
            allowed="a list of mappings with keys " + choices(RULE_KEYS),
        )
    rules = [parse_rule(item, key_path(path, i), where) for i, item in enumerate(value)]
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name is None:
            continue
        if rule.name in seen:
            raise where.error(
                key_path(key_path(path, i), "name"),
                f"rule name {rule.name!r} is already used by {path}[{seen[rule.name]}]",
                allowed="unique rule names (decisions record which rule decided)",
                fix="rename one of the rules",
            )
        seen[rule.name] = i
    return rules


# ----------------------------------------------------------------------------- sections


def parse_activations(value: Any, path: str, where: Where) -> dict[str, Any]:
    """Validate the ``activations`` section (partial: only given keys are returned)."""
    raw = _mapping(value, path, where, ACTIVATION_KEYS)
    out: dict[str, Any] = {}
    if "replace" in raw:
        rep_path = key_path(path, "replace")
        items = raw["replace"]
        pairs = (
            [(key_path(rep_path, i), v) for i, v in enumerate(items)]
            if isinstance(items, list)
            else [(rep_path, items)]
        )
        kinds = set()
        for item_path, item in pairs:
            if isinstance(item, str) and item.lower() in NEVER_REPLACEABLE:
                raise where.error(
                    item_path,
                    f"{item!r} cannot be replaced: {NEVER_REPLACEABLE[item.lower()]}",
                    allowed=choices(ACTIVATION_KINDS),
                    fix=f"remove {item!r} from {rep_path}",
                )
            kinds.add(_choice(item, item_path, where, ACTIVATION_KINDS, "activation"))
        out["replace"] = tuple(k for k in ACTIVATION_KINDS if k in kinds)
    if "with" in raw:
        out["with_"] = _choice(
            raw["with"], key_path(path, "with"), where, ACTIVATION_REPLACEMENTS, "replacement"
        )
    if "scope" in raw:
        out["scope"] = _choice(
            raw["scope"], key_path(path, "scope"), where, ACTIVATION_SCOPES, "activation scope"
        )
    return out


def parse_shortcuts(value: Any, path: str, where: Where) -> dict[str, Any]:
    """Validate the ``shortcuts`` section."""
    raw = _mapping(value, path, where, SHORTCUT_KEYS)
    return {k: _bool(v, key_path(path, k), where) for k, v in raw.items()}


def parse_document(data: Any, where: Where) -> Parts:
    """Validate one whole recipe document.

    Args:
        data: The document as plain data (what ``yaml.safe_load`` returns).
        where: Where it came from, for error messages.

    Returns:
        The validated, normalized parts.

    Raises:
        RecipeError: Anything invalid.
    """
    if not isinstance(data, Mapping):
        raise where.error(
            "",
            f"a recipe must be a mapping, got {describe_value(data)}",
            allowed=f"a mapping with keys {choices(TOP_LEVEL_KEYS)}",
            fix=f"start the file with 'schema_version: {SCHEMA_VERSION}' and a 'rules:' list",
        )
    raw = _mapping(data, "", where, TOP_LEVEL_KEYS)
    if "schema_version" not in raw:
        raise where.error(
            "schema_version",
            "missing required key 'schema_version'",
            allowed=str(SCHEMA_VERSION),
            fix=f"add 'schema_version: {SCHEMA_VERSION}' at the top of the recipe",
        )
    version = raw["schema_version"]
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise where.error(
            "schema_version",
            f"unsupported schema_version {describe_value(version)}; this autobin reads "
            f"schema_version {SCHEMA_VERSION}",
            allowed=str(SCHEMA_VERSION),
            fix="write the recipe for schema_version 1, or upgrade autobin",
        )
    parts = Parts(schema_version=SCHEMA_VERSION)
    if "name" in raw:
        parts.name = _text(raw["name"], "name", where, allow_empty=False)
    if "description" in raw:
        parts.description = _text(raw["description"], "description", where)
    if "extends" in raw:
        parts.extends = _text(raw["extends"], "extends", where, allow_empty=False)
    if "defaults" in raw:
        parts.defaults = parse_defaults(raw["defaults"], "defaults", where)
    if "rules" in raw:
        parts.rules = parse_rules(raw["rules"], "rules", where)
    elif parts.extends is None:
        raise where.error(
            "rules",
            "missing required key 'rules'",
            allowed="a list of rules (or 'extends: <recipe>' to inherit them)",
            fix="add a 'rules:' list; rules are evaluated top to bottom, first match wins",
        )
    if "activations" in raw:
        parts.activations = parse_activations(raw["activations"], "activations", where)
    if "shortcuts" in raw:
        parts.shortcuts = parse_shortcuts(raw["shortcuts"], "shortcuts", where)
    return parts
