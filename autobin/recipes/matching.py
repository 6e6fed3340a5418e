"""Rule matching: does a rule's ``match`` hold for a layer, and which rule decides it.

Precedence: rules are evaluated top to bottom; the first rule whose every ``match`` condition
holds decides the layer; a layer no rule matches stays float with reason "no rule matched".

Name patterns:

* a glob by default, matched against the whole qualified module name: ``*`` matches within one
  dotted component (``blocks.*.mlp.fc1`` matches ``blocks.3.mlp.fc1``), ``**`` matches across
  components (``layer1.**`` matches everything under ``layer1``; a leading ``**.`` also
  matches zero components, so ``**.downsample.*`` matches ``downsample.0`` too), ``?`` matches
  one character other than ``.``, ``[abc]`` / ``[!abc]`` match a character set;
* a regular expression with the prefix ``re:``, which must match the whole name
  (``re.fullmatch``): ``re:layer[34]\\..*\\.conv2``.

Quote a pattern in YAML when it starts with ``*`` (YAML reads ``*x`` as an alias).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ..nn import method_spec
from .schema import NO_RULE, NO_RULE_REASON, BinarizeDefaults, Decision, LayerInfo, Match, Rule

REGEX_PREFIX = "re:"


def glob_to_regex(glob: str) -> str:
    """Translate a module-name glob into an anchored-by-fullmatch regex source.

    Args:
        glob: The glob, e.g. ``blocks.*.mlp.fc1``.

    Returns:
        A regex source for :func:`re.fullmatch`.

    Raises:
        ValueError: An unclosed ``[``.
    """
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        if glob.startswith("**", i):
            i += 2
            if i < n and glob[i] == ".":
                out.append(r"(?:.*\.)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append(r"[^.]*")
        elif ch == "?":
            out.append(r"[^.]")
        elif ch == "[":
            end = glob.find("]", i + 2 if glob.startswith("[!", i) else i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' at position {i}")
            body = glob[i + 1 : end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_name_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``match.name`` pattern (glob, or regex after ``re:``).

    Raises:
        re.error: A bad regular expression.
        ValueError: A bad glob.
    """
    if pattern.startswith(REGEX_PREFIX):
        return re.compile(pattern[len(REGEX_PREFIX) :])
    return re.compile(glob_to_regex(pattern))


def _in_range(value: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def match_layer(match: Match, info: LayerInfo) -> bool:
    """Return True when every condition of ``match`` holds for ``info``.

    A linear has no kernel: ``kernel_size`` never matches it and it is neither depthwise nor
    pointwise.
    """
    checks = (
        match.types is None or info.kind in match.types or info.type_name in match.types,
        match.names is None
        or any(compile_name_pattern(p).fullmatch(info.name) for p in match.names),
        match.kernel_sizes is None
        or (info.kernel_size is not None and tuple(info.kernel_size) in match.kernel_sizes),
        match.groups is None or info.groups == match.groups,
        match.depthwise is None or info.is_depthwise == match.depthwise,
        match.pointwise is None or info.is_pointwise == match.pointwise,
        match.in_channels is None or _in_range(info.in_channels, match.in_channels),
        match.out_channels is None or _in_range(info.out_channels, match.out_channels),
        match.first is None or info.is_first == match.first,
        match.last is None or info.is_last == match.last,
        match.shortcut is None or info.is_shortcut == match.shortcut,
    )
    return all(checks)


def describe_match(match: Match) -> str:
    """One-line summary of a rule's conditions for generated reasons."""
    parts = []
    for key, value in match.to_dict().items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        parts.append(f"{key}={value}")
    return ", ".join(parts) if parts else "any layer"


def resolve_options(rule: Rule, defaults: BinarizeDefaults) -> tuple[str, dict[str, object]]:
    """Return the method and resolved options of a ``binarize`` rule."""
    merged = defaults.to_dict()
    merged.update(dict(rule.options))
    method = rule.method or defaults.method
    del merged["method"]
    if not method_spec(method).uses_act_form:
        del merged["act_form"]
    return method, merged


def rule_label(rule: Rule, index: int) -> str:
    """The name a decision records: the rule's ``name``, else ``rules[i]``."""
    return rule.name if rule.name is not None else f"rules[{index}]"


def decide(rules: Sequence[Rule], defaults: BinarizeDefaults, info: LayerInfo) -> Decision:
    """Apply ordered rules to one layer: the first rule that matches decides.

    Args:
        rules: The recipe's rules, in order.
        defaults: The recipe's binarize defaults.
        info: The layer.

    Returns:
        The decision; float with reason "no rule matched" when no rule matches.
    """
    for index, rule in enumerate(rules):
        if not match_layer(rule.match, info):
            continue
        label = rule_label(rule, index)
        if rule.action == "float":
            reason = rule.reason or f"kept float: {describe_match(rule.match)}"
            return Decision("float", None, {}, label, reason)
        method, options = resolve_options(rule, defaults)
        reason = rule.reason or f"binarized ({method}): {describe_match(rule.match)}"
        return Decision("binarize", method, options, label, reason)
    return Decision("float", None, {}, NO_RULE, NO_RULE_REASON)
