"""``autobin.deploy``: an inference-only copy of a binarized model with packed binary layers."""

from __future__ import annotations

import copy
import dataclasses
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..graph import family_of
from ..model_info import FloatReference, ModelInfo, attach_info, info
from ..module_tools import set_module
from ..nn import BinaryConv2d, BinaryLayer, BinaryLinear, Maxout
from . import fusion
from .build import active_kernel
from .errors import DeployError, DeployInputError
from .float_parts import check_float_parts
from .fusion import ADDS, first_conv, join_path, low_precision_float_parts, module_call_counts
from .layers import (
    InferenceMaxout,
    PackedConv2d,
    PackedLinear,
    guarded_apply,
    refuse_scripting,
    refuse_tracing,
    unsupported_reason,
)
from .plan import compile_chains

WeightSigns = Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""Binary weights by layer path: ``(signs (bool, shaped like the weight), alpha_w, beta_w)``."""


class NoBinaryLayersWarning(UserWarning):
    """``deploy`` was given a model without binary layers; it returns the model unchanged."""


@dataclass
class DeploySummary:
    """What :func:`deploy` did.

    Attributes:
        packed: paths of the layers now packed.
        folded_norms: ``{packed layer path: BatchNorm path}`` folded into the packed layer.
        float_folded_norms: ``{float conv path: BatchNorm path}`` folded into a float conv.
        maxouts: paths of the Maxouts now run by the compiled kernel (:class:`InferenceMaxout`).
        residuals: packed convs that add their input (fused Bi-Real shortcuts).
        fused_maxouts: ``{packed conv path: Maxout path}`` Maxouts done in the conv's epilogue.
        fused_adds: packed convs that also add the graph's shortcut (``conv(x) + r``) there.
        packs_next: ``{packed conv path: consumer path}``: the epilogue writes the output
            binarized and bit-packed for the next packed layer, which then skips packing.
        low_precision: ``{float conv path: "int8", "bf16" or "fp32-kernel"}``: the float convs
            run in low precision or in float32 by autobin's kernel
            (:mod:`autobin.deploy.float_parts`).
        float_parts: the ``float_parts`` choice deploy was given.
        compiled_chains: module paths of each run of layers executed by one C++ call.
        float32_layers: float layers kept in float32 whatever ``float_parts`` says (the model
            family's choice: a detector's prediction convs).
        kept: ``{path: reason}`` binary layers left fake-quantized (not packable).
        state_bytes: bytes of the deployed model's parameters and buffers.
        float_state_bytes: bytes of the source model's parameters and buffers as float32.
    """

    packed: list[str] = field(default_factory=list)
    folded_norms: dict[str, str] = field(default_factory=dict)
    float_folded_norms: dict[str, str] = field(default_factory=dict)
    maxouts: list[str] = field(default_factory=list)
    residuals: list[str] = field(default_factory=list)
    fused_maxouts: dict[str, str] = field(default_factory=dict)
    fused_adds: list[str] = field(default_factory=list)
    packs_next: dict[str, str] = field(default_factory=dict)
    low_precision: dict[str, str] = field(default_factory=dict)
    float_parts: str = "fp32"
    compiled_chains: list[list[str]] = field(default_factory=list)
    float32_layers: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    state_bytes: int = 0
    float_state_bytes: int = 0

    def __str__(self) -> str:
        ratio = self.float_state_bytes / max(1, self.state_bytes)
        lines = [
            f"packed binary layers: {len(self.packed)} (BatchNorm folded into "
            f"{len(self.folded_norms)}, shortcut fused into {len(self.residuals)}), BatchNorm "
            f"folded into {len(self.float_folded_norms)} float convs, {len(self.maxouts)} Maxouts "
            f"compiled; fused glue: {len(self.fused_maxouts)} Maxouts and {len(self.fused_adds)} "
            f"shortcut adds in conv epilogues, {len(self.packs_next)} outputs packed for the next "
            f"layer there; float parts ({self.float_parts}): "
            f"{list(self.low_precision.values()).count('int8')} convs in int8, "
            f"{list(self.low_precision.values()).count('bf16')} in bf16, "
            f"{list(self.low_precision.values()).count('fp32-kernel')} in the fp32 kernel"
            f"{f', {len(self.float32_layers)} kept float32' if self.float32_layers else ''}; "
            f"{sum(map(len, self.compiled_chains))} layers run by "
            f"{len(self.compiled_chains)} C++ call(s); kernel path: {active_kernel()}",
            f"parameter and buffer bytes: {self.state_bytes:,} deployed vs "
            f"{self.float_state_bytes:,} float32 ({ratio:.1f}x smaller)",
        ]
        lines += [f"kept fake-quantized: {p} ({why})" for p, why in self.kept.items()]
        return "\n".join(lines)


def _state_bytes(model: nn.Module, as_float32: bool) -> int:
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        size = 4 if (as_float32 and t.is_floating_point()) else t.element_size()
        total += t.numel() * size
    return total


def _foldable_norm(norm: nn.Module) -> bool:
    return (
        type(norm) is nn.BatchNorm2d
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )


def _fold_norms(root: nn.Module, summary: DeploySummary) -> dict[str, tuple[nn.Module, str]]:
    """Remove every eval BatchNorm2d that only follows a conv in an fx graph.

    A float conv absorbs it at once (``fuse_conv_bn_eval``); for a packable binary conv it is
    returned as ``{conv path: (norm, norm path)}`` for the packed layer. The graphs then pass
    the conv output on directly.
    """
    folded: dict[str, tuple[nn.Module, str]] = {}
    for prefix, gm in list(root.named_modules()):
        if not isinstance(gm, fx.GraphModule):
            continue
        calls = module_call_counts(gm)
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or len(node.users) != 1:
                continue
            conv = gm.get_submodule(node.target)
            is_float = type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
            packable = isinstance(conv, BinaryConv2d) and unsupported_reason(conv) is None
            if not (is_float or packable):
                continue
            if calls[node.target] != 1:
                continue
            (user,) = node.users
            if user.op != "call_module" or calls.get(user.target) != 1:
                continue
            norm = gm.get_submodule(user.target)
            if not _foldable_norm(norm):
                continue
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
            conv_path, norm_path = join_path(prefix, node.target), join_path(prefix, user.target)
            if is_float:
                set_module(gm, node.target, fuse_conv_bn_eval(conv, norm))
                summary.float_folded_norms[conv_path] = norm_path
            else:
                folded[conv_path] = (norm, norm_path)
            set_module(gm, user.target, nn.Identity())
            changed = True
        if changed:
            gm.graph.lint()
            gm.recompile()
    return folded


def _keeps_shape(conv: BinaryConv2d) -> bool:
    """Whether the conv's output always has its input's shape (stride 1, "same" zero padding)."""
    if conv.in_channels != conv.out_channels or tuple(conv.stride) != (1, 1):
        return False
    if getattr(conv, "dynamic_same_padding", False):
        return True
    pads = _padding_of(conv)
    return pads is not None and all(
        before + after == d * (k - 1)
        for (before, after), k, d in zip(pads, conv.kernel_size, conv.dilation)
    )


def _padding_of(conv: BinaryConv2d) -> list[tuple[int, int]] | None:
    if conv.padding == "valid":
        return [(0, 0), (0, 0)]
    if conv.padding == "same":
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(conv.kernel_size, conv.dilation)]  # fmt: skip
    if isinstance(conv.padding, str):
        return None
    return [(p, p) for p in conv.padding]


def _fuse_residuals(root: nn.Module) -> set[str]:
    """Find ``conv(x) + x`` (the Bi-Real shortcut after a folded BatchNorm) in the fx graphs.

    The add is removed and the conv's path returned: its packed layer adds its input itself.
    """
    fused: set[str] = set()
    for prefix, gm in list(root.named_modules()):
        if not isinstance(gm, fx.GraphModule):
            continue
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or len(node.users) != 1 or not node.args:
                continue
            conv = gm.get_submodule(node.target)
            if not isinstance(conv, BinaryConv2d) or unsupported_reason(conv) is not None:
                continue
            (user,) = node.users
            if user.op != "call_function" or user.target not in ADDS or user.kwargs:
                continue
            if sorted(map(id, user.args)) != sorted((id(node), id(node.args[0]))):
                continue
            if not _keeps_shape(conv):
                continue
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
            fused.add(join_path(prefix, node.target))
            changed = True
        if changed:
            gm.graph.lint()
            gm.recompile()
    return fused


def _input_channels(model: nn.Module) -> int | None:
    """Channels the model's image input must have (read before deploy rewrites it): the first
    conv's input channels (the first conv the fx graph applies to its input, else the first
    conv in module order), or None."""
    if isinstance(model, fx.GraphModule):
        placeholders = [n for n in model.graph.nodes if n.op == "placeholder"]
        if placeholders:
            for user in placeholders[0].users:
                if user.op == "call_module":
                    first = model.get_submodule(user.target)
                    if isinstance(first, nn.Conv2d):
                        return int(first.in_channels)
            return None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


def check_image(x: torch.Tensor, channels: int | None) -> None:
    """One-line errors for a deployed model's image batch (its first tensor input)."""
    shape = tuple(x.shape)
    if not x.is_floating_point():
        raise DeployInputError(
            f"the deployed model expects a float32 image batch, got a {x.dtype} tensor of "
            f"shape {shape}; convert it with x.float() (scaled as in training)"
        )
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise DeployInputError(
            f"the deployed model runs float32 on the CPU, got a {x.dtype} tensor on "
            f"{x.device}; pass x.float().cpu()"
        )
    c = channels
    if c is None:
        return
    if x.dim() == 3 and shape[0] == c:
        raise DeployInputError(
            f"the deployed model expects a batch (N, {c}, H, W), got one unbatched image of "
            f"shape {shape}; pass x.unsqueeze(0)"
        )
    if x.dim() != 4 or shape[1] != c:
        raise DeployInputError(
            f"the deployed model expects a batch (N, {c}, H, W), got shape {shape}; give "
            f"it {c}-channel images"
        )


def check_finite(values: list[Any]) -> None:
    """Refuse NaN or infinite values in the tensors among ``values``, naming the first."""
    for v in values:
        # a sum is non-finite when any value is (or it overflows: then check exactly)
        if (
            isinstance(v, torch.Tensor)
            and v.is_floating_point()
            and not bool(torch.isfinite(v.sum()))
            and not bool(torch.isfinite(v).all())
        ):
            bad = ~torch.isfinite(v)
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise DeployInputError(
                f"the input holds {int(bad.sum())} NaN or infinite values (first at index "
                f"{first}); the packed kernels binarize by comparison, where NaN has no "
                "sign, so the output would be wrong: clean or drop those inputs"
            )


def check_inputs(args: tuple, kwargs: dict[str, Any], channels: int | None) -> None:
    """The checks a deployed model runs on its call's inputs: the first tensor is the image
    batch (:func:`check_image`), no tensor holds NaN/inf or requires grad."""
    values = [*args, *kwargs.values()]
    image = next((v for v in values if isinstance(v, torch.Tensor)), None)
    if image is not None:
        check_image(image, channels)
    check_finite(values)
    for v in values:
        if isinstance(v, torch.Tensor) and v.requires_grad:
            raise DeployError(
                "a deployed model is inference only: an input requires grad; pass "
                "tensor.detach() (gradients need the fake-quantized model)"
            )


class InputCheck:
    """Forward pre-hook of a model deployed in place (:attr:`ModelFamily.deploys_in_place`):
    :func:`check_inputs` on each call (a class, so the hook pickles and deep-copies)."""

    def __init__(self, channels: int | None) -> None:
        self.channels = channels

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        refuse_tracing("a deployed model")
        check_inputs(args, kwargs, self.channels)


class DeployedModel(nn.Module):
    """Inference-only model whose binary layers run packed XNOR/popcount kernels.

    Call it like the source model, on a float32 CPU batch ``(N, C, H, W)`` (other input is
    refused with a :class:`~autobin.deploy.errors.DeployInputError` naming the fix). Tensor
    inputs must not require grad; 4-D float inputs are made channels-last (the packed kernels
    read and write that layout). Outputs equal the source model's eval-mode outputs up to float
    rounding (see :mod:`autobin.deploy`).

    NaN or infinite input is refused: the kernels binarize by comparison, where NaN has no sign,
    so the output would be finite and differ from the fake-quantized model's (which propagates
    NaN). ``.float()``, ``.to(torch.float32)``, ``.cpu()`` leave the model as it is; other casts
    and moves, ``torch.jit.trace`` and ``torch.jit.script`` are refused in one line.

    Attributes:
        model: the rewritten module.
        summary: the :class:`DeploySummary`.
        input_channels: the channels an image input must have (None: not checked).
    """

    def __init__(
        self, model: nn.Module, summary: DeploySummary, input_channels: int | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.summary = summary
        self.input_channels = input_channels
        super().train(False)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        return super()._apply(guarded_apply("a deployed model", fn, keep_contiguous=False), recurse)

    def __prepare_scriptable__(self) -> Any:
        refuse_scripting("a deployed model")

    def train(self, mode: bool = True) -> DeployedModel:
        if mode:
            raise DeployError(
                "a deployed model is inference only and cannot be put in training mode; train "
                "the fake-quantized model and call autobin.deploy on it again"
            )
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        refuse_tracing("a deployed model")
        check_inputs(args, kwargs, self.input_channels)
        args = tuple(_channels_last(a) for a in args)
        kwargs = {k: _channels_last(v) for k, v in kwargs.items()}
        with torch.no_grad():
            return self.model(*args, **kwargs)


def _channels_last(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.dim() == 4 and v.is_floating_point():
        return v.contiguous(memory_format=torch.channels_last)
    return v


def _deepcopy(model: nn.Module, memo: dict) -> nn.Module:
    """``copy.deepcopy``; an fx graph copies node by node recursively, so deep networks (e.g.
    EfficientNets) need more than Python's default recursion limit."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))
    try:
        return copy.deepcopy(model, memo)
    finally:
        sys.setrecursionlimit(old)


def deploy(
    model: nn.Module,
    *,
    fold_norms: bool = True,
    fuse_residuals: bool = True,
    fuse_glue: bool = True,
    float_parts: str = "auto",
    compile_graph: bool = True,
    weight_signs: WeightSigns | None = None,
) -> nn.Module:
    """Inference-only copy of a binarized model with packed binary layers.

    Every binary conv/linear (:class:`autobin.nn.BinaryLayer`) becomes a
    :class:`PackedConv2d` / :class:`PackedLinear`: weights bit-packed once, inputs binarized
    and packed along channels at run time, outputs from XOR/popcount plus the AdaBin correction
    terms. In fx-traced models (what :func:`autobin.binarize` returns) a BatchNorm2d that only
    follows a conv is folded into it (binary or float). Maxouts run a one-pass compiled kernel
    with the same values; the other float parts (stem, classifier, shortcuts, ...) run as
    before. ``model`` is not modified.

    Args:
        model: a binarized model in eval mode.
        fold_norms: fold BatchNorms into the packed layers where the graph allows.
        fuse_residuals: let a packed conv add its own input where the graph adds it right
            after the conv (and its folded BatchNorm): the Bi-Real shortcut.
        fuse_glue: do a Maxout (and a shortcut add before it) that follows a packed conv in
            the conv's epilogue, and let a packed conv write its output already bit-packed for
            a packed conv that consumes it (same values: each step keeps its rounding).
        float_parts: ``"auto"`` (int8 stem, bf16 other eligible float convs, where the CPU
            has the instructions and the model family allows it; else ``"fp32-kernel"``),
            ``"fp32"`` (float32 in torch: the fake-quantized model's values within the
            documented bound), ``"fp32-kernel"`` (float32 in autobin's kernel, run inside
            compiled chains), ``"int8"`` or ``"bf16"``; see :mod:`autobin.deploy.float_parts`.
            Layers the model family keeps float32 (a detector's prediction convs) stay float32
            (torch's) whatever the choice.
        compile_graph: run each run of consecutive packed/float-part convs and max pools in fx
            graphs by one C++ call (:mod:`autobin.deploy.plan`; same values).
        weight_signs: binary weights by layer path, used instead of the layers' own (the zoo
            passes its stored packed signs, so they are packed without a float detour).

    Returns:
        A :class:`DeployedModel`; for a model family that deploys in place (mmdet detectors)
        a copy of the model itself, its class and methods kept (``test_step``/``predict``
        work), its parts deployed, the summary in ``autobin.info(result).deployment`` and the
        same input checks in a forward pre-hook; or ``model`` itself, with a
        :class:`NoBinaryLayersWarning`, when it has no binary layers.

    Raises:
        DeployError: ``model`` is in training mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"deploy expects an nn.Module, got {type(model).__name__}")
    check_float_parts(float_parts)
    if isinstance(model, DeployedModel) or _deployment(model) is not None:
        return model
    layers = {n: m for n, m in model.named_modules() if isinstance(m, BinaryLayer)}
    if not layers:
        warnings.warn(
            "deploy: the model has no binary layers (binarize it with autobin.binarize first); "
            "returning it unchanged",
            NoBinaryLayersWarning,
            stacklevel=2,
        )
        return model
    if model.training:
        raise DeployError(
            "deploy makes an inference-only model, but the model is in training mode (BatchNorm "
            "would use batch statistics); call model.eval() first"
        )
    family = family_of(model)
    if float_parts == "auto" and not family.auto_low_precision:
        float_parts = "fp32-kernel"
    float32_layers = family.float32_layers(model) if float_parts != "fp32" else ()
    work = _deepcopy(model, {})  # the info record's float model is shared, not copied
    summary = DeploySummary(
        float_state_bytes=_state_bytes(model, as_float32=True), float_parts=float_parts,
        float32_layers=list(float32_layers),
    )  # fmt: skip
    input_channels = _input_channels(work)
    views = family.graph_views(work)  # parts whose graphs the passes below edit
    for name, _, view in views:
        set_module(work, name, view)
    folded = _fold_norms(work, summary) if fold_norms else {}
    residuals = _fuse_residuals(work) if fuse_residuals else set()
    for name, layer in [(n, m) for n, m in work.named_modules() if isinstance(m, BinaryLayer)]:
        reason = unsupported_reason(layer)
        if reason is not None:
            summary.kept[name] = reason
            continue
        options: dict[str, Any] = {}
        if weight_signs is not None and name in weight_signs:
            signs, alpha, beta = weight_signs[name]
            options = {"signs": signs, "weight_set": (alpha, beta)}
        norm, norm_path = folded.get(name, (None, None))
        if isinstance(layer, BinaryConv2d):
            packed = PackedConv2d(layer, norm=norm, residual=name in residuals, **options)
        else:
            assert isinstance(layer, BinaryLinear)
            packed = PackedLinear(layer, norm=norm, **options)
        set_module(work, name, packed)
        if name in residuals:
            summary.residuals.append(name)
        summary.packed.append(name)
        if norm_path is not None:
            summary.folded_norms[name] = norm_path
    for name, m in [(n, m) for n, m in work.named_modules() if isinstance(m, Maxout)]:
        set_module(work, name, InferenceMaxout(m))
        summary.maxouts.append(name)
    if fuse_glue:
        maxouts, adds, packs = fusion.fuse_glue(work)
        summary.fused_maxouts.update(maxouts)
        summary.fused_adds += adds
        summary.packs_next.update(packs)
    if float_parts != "fp32":
        kinds, stem_maxouts = low_precision_float_parts(
            work, float_parts, first_conv(work), keep=set(float32_layers)
        )
        summary.low_precision.update(kinds)
        summary.fused_maxouts.update(stem_maxouts)
    if compile_graph:
        summary.compiled_chains = compile_chains(work)
    for name, part, view in views:
        work = family.install(work, name, part, view)
    for p in work.parameters():
        p.requires_grad_(False)
    work.eval()
    summary.state_bytes = _state_bytes(work, as_float32=False)
    record = info(work)
    if record is not None:  # the teacher binarize() keeps is not part of a deployment
        record = dataclasses.replace(
            record, float_reference=FloatReference(None), deployment=summary
        )
        attach_info(work, record)
    if family.deploys_in_place:
        if record is None:
            attach_info(work, ModelInfo(family.name, None, None, None, deployment=summary))
        work.register_forward_pre_hook(InputCheck(input_channels), with_kwargs=True)
        return work
    return DeployedModel(work, summary, input_channels)


def _deployment(model: nn.Module) -> DeploySummary | None:
    """The summary of a model :func:`deploy` made in place, else None."""
    record = info(model)
    return record.deployment if record is not None else None


__all__ = ["DeploySummary", "DeployedModel", "NoBinaryLayersWarning", "WeightSigns", "deploy"]
