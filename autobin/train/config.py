"""Training schedules as data: one frozen, validated :class:`TrainConfig`.

A config comes from keyword arguments, a dict, a YAML file (parsed with ``yaml.safe_load``,
never executed) or the name of a built-in config (the top-level ``configs/`` folder, installed as
``autobin.builtin_configs``: the AdaBin paper's schedules, see :func:`list_train_configs`).
Every value is checked; an error names the key, the bad value and the allowed values, and the
file when there is one.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import AutobinError

OptimizerName = Literal["adam", "sgd"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class TrainConfigError(AutobinError, ValueError):
    """A training config value is missing, unknown or out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained.

    Attributes:
        epochs: number of epochs (``>= 1``).
        batch_size: training batch size per process.
        eval_batch_size: evaluation batch size (``None``: twice ``batch_size``).
        lr: peak learning rate.
        optimizer: ``"adam"`` (default; lr decays linearly to 0, the ReActNet recipe) or
            ``"sgd"`` (momentum ``momentum``, cosine decay to 0, the AdaBin CIFAR recipe).
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights. Never applied to biases, normalization layers'
            parameters, the activation set parameters ``act_alpha``/``act_beta``, Maxout slopes
            ``gamma_pos``/``gamma_neg``, scalars, or a timm model's ``no_weight_decay()`` names.
        step2_weight_decay: weight decay during step 2 of the two-step schedule (ReActNet uses
            0); ``None`` keeps ``weight_decay``.
        grad_clip_norm: clip the global gradient norm to this value (``None``: no clipping).
        kd_weight: weight of the distribution (KL) distillation loss.
        ce_weight: weight of the cross-entropy loss on labels.
        feature_weight: weight of the feature distillation loss.
        temperature: softmax temperature ``T`` of the distribution loss.
        feature_layers: module names (exact, or ``"re:<regex>"`` matched in full) whose outputs
            are distilled; the names must exist in both student and teacher.
        two_step: ReActNet's two-step schedule: step 1 trains with binary activations and float
            weights, step 2 with both binary, continuing from step 1. Each step gets its own
            learning-rate decay and a fresh optimizer state.
        step1_fraction: fraction of ``epochs`` spent in step 1 (rounded, at least one epoch in
            each step).
        ede_schedule: drive the ``ede`` weight estimator of layers that use it with the
            progressive schedule of :func:`autobin.quantizers.ede_schedule`, per epoch (over
            the epochs in which weights are binarized).
        ede_t_min: estimator temperature at the start of the schedule.
        ede_t_max: estimator temperature at the end of the schedule.
        seed: seeds model-side randomness and the data order (the order of epoch ``e``
            depends only on ``seed`` and ``e``).
        num_workers: DataLoader worker processes.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        precision: ``"auto"`` (bf16 autocast on CUDA when supported, else fp16 with a
            gradient scaler; fp32 elsewhere), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        channels_last: train in the channels-last memory layout (``None``: on CUDA yes,
            elsewhere no).
        compile: run the student through ``torch.compile`` (the teacher stays eager).
        sync_bn: under several processes on CUDA, convert the student's BatchNorm layers to
            ``SyncBatchNorm`` (statistics over the global batch).
        progress: progress bars on a terminal (rank 0 only); with output redirected to a file
            or pipe, one line per epoch instead.
        plots: write ``curves.png`` and ``binary_sets.png`` at the end.
    """

    epochs: int = 1
    batch_size: int = 64
    eval_batch_size: int | None = None
    lr: float = 1e-3
    optimizer: OptimizerName = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    step2_weight_decay: float | None = 0.0
    grad_clip_norm: float | None = None
    kd_weight: float = 1.0
    ce_weight: float = 0.0
    feature_weight: float = 0.0
    temperature: float = 1.0
    feature_layers: tuple[str, ...] = field(default_factory=tuple)
    two_step: bool = False
    step1_fraction: float = 0.5
    ede_schedule: bool = True
    ede_t_min: float = 1e-3
    ede_t_max: float = 10.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        self._check_ranges()

    def _check_ranges(self) -> None:
        positive = ("epochs", "batch_size", "lr", "temperature", "ede_t_min", "ede_t_max")
        for name in positive:
            if not getattr(self, name) > 0:
                _fail(name, getattr(self, name), "a value > 0")
        for name in ("weight_decay", "kd_weight", "ce_weight", "feature_weight", "num_workers"):
            if not getattr(self, name) >= 0:
                _fail(name, getattr(self, name), "a value >= 0")
        for name in ("eval_batch_size", "grad_clip_norm"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                _fail(name, getattr(self, name), "a value > 0, or null")
        if self.step2_weight_decay is not None and not self.step2_weight_decay >= 0:
            _fail("step2_weight_decay", self.step2_weight_decay, "a value >= 0, or null")
        if not 0 <= self.momentum < 1:
            _fail("momentum", self.momentum, "a value in [0, 1)")
        if not 0 < self.step1_fraction < 1:
            _fail("step1_fraction", self.step1_fraction, "a value in (0, 1)")
        if self.ede_t_max < self.ede_t_min:
            _fail("ede_t_max", self.ede_t_max, f"a value >= ede_t_min ({self.ede_t_min})")
        if self.two_step and self.epochs < 2:
            _fail("epochs", self.epochs, "at least 2 with two_step: true (one epoch per step)")
        if self.kd_weight == self.ce_weight == self.feature_weight == 0:
            _fail("kd_weight", 0.0, "a positive weight for at least one of kd, ce and feature")
        if self.feature_weight > 0 and not self.feature_layers:
            _fail("feature_layers", [], "a non-empty list of module names when feature_weight > 0")
        if not _DEVICE_RE.match(self.device):
            _fail("device", self.device, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")

    @property
    def step1_epochs(self) -> int:
        """Epochs of step 1 of the two-step schedule (0 without it)."""
        if not self.two_step:
            return 0
        return min(max(round(self.epochs * self.step1_fraction), 1), self.epochs - 1)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like the constructor)."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists instead of tuples), loadable with :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["feature_layers"] = list(self.feature_layers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> TrainConfig:
        """Build from a mapping; unknown keys and bad values raise :class:`TrainConfigError`.

        Args:
            data: keys are field names of :class:`TrainConfig`.
            source: where the mapping came from (a file name), quoted in errors.
        """
        if not isinstance(data, Mapping):
            raise TrainConfigError(
                _where(source) + f"a training config must be a mapping of keys to values, "
                f"got {type(data).__name__}"
            )
        try:
            _check_keys(data)
            return cls(**dict(data))
        except TrainConfigError as exc:
            raise TrainConfigError(_where(source) + str(exc)) from None

    @classmethod
    def from_yaml(cls, path: str | Path, *, key: str | None = None) -> TrainConfig:
        """Load from a YAML file (``yaml.safe_load``); ``key`` selects a sub-mapping."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config file {str(path)!r} does not exist")
        with path.open() as fh:
            try:
                data = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise TrainConfigError(f"{path}: not valid YAML: {exc}") from None
        if key is not None:
            if not isinstance(data, Mapping) or key not in data:
                raise TrainConfigError(f"{path}: no top-level key {key!r}")
            data = data[key]
        return cls.from_dict(data if data is not None else {}, source=str(path))


def builtin_configs_dir() -> Path:
    """The folder holding the shipped training configs (``autobin.builtin_configs``)."""
    try:
        path = Path(str(importlib.resources.files("autobin.builtin_configs")))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "configs"  # a source checkout


def list_train_configs() -> list[str]:
    """Names of the built-in training configs, sorted (e.g. ``"cifar10-resnet20"``)."""
    folder = builtin_configs_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def train_config_path(config: str | Path) -> Path:
    """The YAML file ``config`` names: a path (with a suffix or a folder), else a built-in
    config's name.

    Raises:
        FileNotFoundError: a bare name that is neither a file nor a built-in config (the message
            lists the built-in names).
    """
    path = Path(config)
    if path.is_file() or path.suffix or len(path.parts) > 1:  # a path: from_yaml checks it
        return path
    builtins = list_train_configs()
    if str(config) in builtins:
        return builtin_configs_dir() / f"{config}.yaml"
    close = difflib.get_close_matches(str(config), builtins, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(
        f"training config {str(config)!r} is neither a file nor a built-in config.{hint} "
        f"Built-in configs: {', '.join(builtins)}"
    )


def load_train_config(
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None, **overrides: Any
) -> TrainConfig:
    """Resolve a config given as an object, a mapping, a YAML path or a built-in config's name,
    then apply ``overrides``.

    ``None`` values in ``overrides`` are ignored (they mean "not given").
    """
    changes = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        return TrainConfig.from_dict(changes)
    if isinstance(config, Mapping):  # validate the merged mapping: fields depend on each other
        return TrainConfig.from_dict({**config, **changes})
    if isinstance(config, TrainConfig):
        base = config
    elif isinstance(config, (str, Path)):
        base = TrainConfig.from_yaml(train_config_path(config))
    else:
        raise TypeError(
            f"config must be a TrainConfig, a mapping or a YAML path, got {type(config).__name__}"
        )
    return base.replace(**changes) if changes else base


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise TrainConfigError(f"training config key {key!r}: got {value!r}, expected {allowed}")


def _check_keys(data: Mapping[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TrainConfigError(
                f"unknown training config key {key!r}.{hint} Allowed keys: {', '.join(names)}"
            )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's type hint; ints are accepted for floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner)
    if origin is Literal:
        if value not in args:
            _fail(name, value, "one of " + ", ".join(repr(a) for a in args))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            _fail(name, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(name, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, value, "a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(name, value, "a string")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            _fail(name, value, "a list of strings")
        if not all(isinstance(v, str) and v for v in value):
            _fail(name, value, "a list of non-empty strings")
        return tuple(value)
    raise TypeError(f"TrainConfig field {name!r} has an unsupported type {hint!r}")  # bug guard
