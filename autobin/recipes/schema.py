"""Recipe data model: the closed vocabularies and the frozen dataclasses a recipe is made of.

Nothing here reads files or matches layers; see ``validate.py`` (raw data -> these classes),
``matching.py`` (a rule's ``match`` against a :class:`LayerInfo`) and ``recipe.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..nn import Method
from ..quantizers.activation import ActForm
from ..quantizers.sign import WeightEstimator

SCHEMA_VERSION = 1

Action = Literal["binarize", "float"]
ActivationScope = Literal["after_binary", "all"]
LayerKind = Literal["conv", "linear"]

# The method, estimator and activation-form vocabularies are declared once, in autobin.nn's
# registry (METHODS) and autobin.quantizers (WEIGHT_ESTIMATORS, ACT_FORMS).
ACTIONS: tuple[str, ...] = ("binarize", "float")
ACTIVATION_SCOPES: tuple[str, ...] = ("after_binary", "all")
ACTIVATION_REPLACEMENTS: tuple[str, ...] = ("maxout",)
LAYER_KINDS: tuple[str, ...] = ("conv", "linear")

#: Exact class names a rule's ``match.type`` may name, with the kind each one is.
#: ``conv`` / ``linear`` match every class of that kind; a class name matches only itself.
LAYER_CLASSES: dict[str, str] = {
    "Conv2d": "conv",  # torch.nn, mmcv wrappers
    "Conv2dSame": "conv",  # timm: TF "same" padding
    "Conv2dAdaptivePadding": "conv",  # mmcv
    "StdConv2d": "conv",  # timm: weight-standardized
    "StdConv2dSame": "conv",
    "ScaledStdConv2d": "conv",
    "ScaledStdConv2dSame": "conv",
    "Linear": "linear",  # torch.nn, mmcv wrappers
    "NonDynamicallyQuantizableLinear": "linear",  # nn.MultiheadAttention.out_proj
}
LAYER_TYPES: tuple[str, ...] = LAYER_KINDS + tuple(LAYER_CLASSES)


_GATE_WHY = (
    "it is a gate: its output scales another tensor (squeeze-excitation, attention), so "
    "it must keep its bounded range; autobin never replaces gates"
)
_NORM_WHY = (
    "it is a normalization, not an activation; AdaBin keeps every norm in float and autobin "
    "never replaces norms"
)
#: Names that look like activations but may never be replaced, with the reason why.
NEVER_REPLACEABLE: dict[str, str] = {
    "sigmoid": _GATE_WHY,
    "hardsigmoid": _GATE_WHY,
    "hard_sigmoid": _GATE_WHY,
    "softmax": (
        "it is a gate/normalizer (attention weights, class probabilities) whose outputs must "
        "sum to one; autobin never replaces it"
    ),
    "batchnorm": _NORM_WHY,
    "batch_norm": _NORM_WHY,
    "layernorm": _NORM_WHY,
    "layer_norm": _NORM_WHY,
    "groupnorm": _NORM_WHY,
    "group_norm": _NORM_WHY,
    "instancenorm": _NORM_WHY,
    "instance_norm": _NORM_WHY,
    "rmsnorm": _NORM_WHY,
    "norm": _NORM_WHY,
}

NO_RULE = "-"
NO_RULE_REASON = "no rule matched"


@dataclass(frozen=True)
class LayerInfo:
    """What a recipe may know about one conv or linear layer (built by the graph pass).

    Attributes:
        name: Qualified module name, e.g. ``layer2.0.downsample.0``.
        type_name: The module's class name, e.g. ``Conv2d``.
        kind: ``conv`` or ``linear``.
        kernel_size: ``(kh, kw)`` for a conv; None for a linear.
        groups: Conv groups (1 for a linear).
        in_channels: Input channels (``in_features`` for a linear).
        out_channels: Output channels (``out_features`` for a linear).
        is_first: The stem: the first compute layer in execution order.
        is_last: The classifier: the last compute layer in execution order.
        is_shortcut: Lives in a shortcut/downsample branch.
    """

    name: str
    type_name: str
    kind: LayerKind
    kernel_size: tuple[int, int] | None
    groups: int
    in_channels: int
    out_channels: int
    is_first: bool = False
    is_last: bool = False
    is_shortcut: bool = False

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"LayerInfo.kind must be one of {LAYER_KINDS}, got {self.kind!r}")

    @property
    def is_depthwise(self) -> bool:
        """True when ``groups == in_channels`` and ``groups > 1``."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def is_pointwise(self) -> bool:
        """True for a 1x1 conv (never for a linear)."""
        return self.kernel_size == (1, 1)


@dataclass(frozen=True)
class Decision:
    """What a recipe decided for one layer.

    Attributes:
        action: ``binarize`` or ``float``.
        method: a registered method name (``adabin``, ``sign``, ``xnor``) when binarized, else
            None.
        options: The resolved binarize options (recipe defaults overridden by the rule):
            ``weight_estimator``, ``binarize_activations``, ``binarize_weights`` and, for
            ``adabin`` only, ``act_form``. Empty when the layer stays float.
        rule: The deciding rule: its ``name``, or ``rules[i]`` when it has none; ``-`` when no
            rule matched.
        reason: Text for the dry-run report (the rule's ``reason``, or a generated one).
    """

    action: Action
    method: str | None
    options: dict[str, Any]
    rule: str
    reason: str


@dataclass(frozen=True)
class BinarizeDefaults:
    """Recipe-level binarize settings; every ``binarize`` rule starts from these.

    Attributes:
        method: ``adabin`` (learned binary sets, ADABIN.md), ``sign`` (BNN: sign with clipped
            STE) or ``xnor`` (XNOR-Net: sign with per-channel scaling).
        weight_estimator: Backward of sgn for weights: ``ste`` or ``ede`` (ADABIN.md §2).
        act_form: ``paper`` or ``code`` (the released-code compatibility form, ADABIN.md §3);
            used by ``adabin`` only.
        binarize_activations: Binarize the layer's input.
        binarize_weights: Binarize the layer's weights.
    """

    method: Method = "adabin"
    weight_estimator: WeightEstimator = "ste"
    act_form: ActForm = "paper"
    binarize_activations: bool = True
    binarize_weights: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain data."""
        return {
            "method": self.method,
            "weight_estimator": self.weight_estimator,
            "act_form": self.act_form,
            "binarize_activations": self.binarize_activations,
            "binarize_weights": self.binarize_weights,
        }


#: Keys a rule's ``options`` (and the recipe's ``defaults``, plus ``method``) may set.
OPTION_KEYS: tuple[str, ...] = (
    "weight_estimator",
    "act_form",
    "binarize_activations",
    "binarize_weights",
)


@dataclass(frozen=True)
class Match:
    """The conditions of one rule; None means "not tested". All given conditions must hold.

    Attributes:
        types: ``conv`` / ``linear`` or exact class names; any one may match.
        names: Name patterns (glob, or regex with ``re:``); any one may match.
        kernel_sizes: ``(kh, kw)`` pairs; any one may match. Never matches a linear.
        groups: Exact conv groups.
        depthwise: Test ``groups == in_channels and groups > 1``.
        pointwise: Test a 1x1 kernel.
        in_channels: Inclusive ``(min, max)``; None bounds are open.
        out_channels: Inclusive ``(min, max)``; None bounds are open.
        first: Test the stem flag.
        last: Test the classifier flag.
        shortcut: Test the shortcut/downsample flag.
    """

    types: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    kernel_sizes: tuple[tuple[int, int], ...] | None = None
    groups: int | None = None
    depthwise: bool | None = None
    pointwise: bool | None = None
    in_channels: tuple[int | None, int | None] | None = None
    out_channels: tuple[int | None, int | None] | None = None
    first: bool | None = None
    last: bool | None = None
    shortcut: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the conditions in normalized recipe form (only those that are tested)."""
        out: dict[str, Any] = {}
        if self.types is not None:
            out["type"] = list(self.types)
        if self.names is not None:
            out["name"] = list(self.names)
        if self.kernel_sizes is not None:
            out["kernel_size"] = [list(k) for k in self.kernel_sizes]
        for key in ("groups", "depthwise", "pointwise"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("in_channels", "out_channels"):
            bounds = getattr(self, key)
            if bounds is not None:
                out[key] = {
                    k: v for k, v in zip(("min", "max"), bounds, strict=True) if v is not None
                }
        for key in ("first", "last", "shortcut"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Rule:
    """One ordered rule: if every condition of ``match`` holds, ``action`` decides the layer.

    Attributes:
        match: The conditions (an empty :class:`Match` matches every layer).
        action: ``binarize`` or ``float``.
        name: Optional label shown in reports; ``rules[i]`` is used when absent.
        method: For ``binarize``: overrides the recipe's default method.
        options: For ``binarize``: ``(key, value)`` overrides of the recipe defaults, sorted.
        reason: Optional text shown in the dry-run report.
    """

    match: Match
    action: Action
    name: str | None = None
    method: Method | None = None
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the rule in normalized recipe form."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["match"] = self.match.to_dict()
        out["action"] = self.action
        if self.method is not None:
            out["method"] = self.method
        if self.options:
            out["options"] = dict(self.options)
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class ActivationPolicy:
    """Which activations are replaced, by what, and where.

    Attributes:
        replace: Activation kinds (from :data:`ACTIVATION_KINDS`) to replace, canonical order.
        with_: The replacement; only ``maxout`` (ADABIN.md §4).
        scope: ``after_binary`` (only activations fed by a binarized layer's output path) or
            ``all``.
    """

    replace: tuple[str, ...] = ()
    with_: Literal["maxout"] = "maxout"
    scope: ActivationScope = "after_binary"

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as plain data (key ``with``, as in YAML)."""
        return {"replace": list(self.replace), "with": self.with_, "scope": self.scope}


@dataclass(frozen=True)
class ShortcutPolicy:
    """Real-valued shortcuts added around binarized layers.

    Attributes:
        bireal: Wrap each binarized conv and its BN in an identity shortcut when input and
            output shapes match (Bi-Real Net style, ADABIN.md §5).
    """

    bireal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as plain data."""
        return {"bireal": self.bireal}
