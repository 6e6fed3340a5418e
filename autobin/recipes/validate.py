"""Validation: turn one recipe document (plain data from YAML or a dict) into checked parts.

Each function checks one section (a rule's ``match``, its options, ``rules``, ``defaults``,
``activations``, ``shortcuts``, the whole document), names the exact key path on error, and
returns normalized values; the checks of single values live in ``fields.py``. Sections may be
partial here (a recipe that ``extends`` another only gives what it changes); ``recipe.py``
fills in the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..nn import METHODS, method_descriptions, method_spec
from ..nn.activation_kinds import ACTIVATION_KINDS
from ..quantizers import ACT_FORMS, WEIGHT_ESTIMATORS
from .errors import Where, choices, describe_value, key_path
from .fields import (
    _bool,
    _channels,
    _choice,
    _int,
    _kernel_sizes,
    _mapping,
    _name_patterns,
    _text,
    _types,
)
from .schema import (
    ACTIONS,
    ACTIVATION_REPLACEMENTS,
    ACTIVATION_SCOPES,
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


# ----------------------------------------------------------------------------- match


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
