"""Inference-only packed binary layers: :class:`PackedConv2d` and :class:`PackedLinear`.

A packed layer holds the weight signs bit-packed (:mod:`.packing`), per-tap popcounts and five
per-output-channel coefficients (the AdaBin correction terms with any following BatchNorm
folded in, see :mod:`.reference`); no float weight. At run time the input is binarized and
bit-packed along channels and the output computed with XOR/popcount by the compiled kernel of
the active path (:mod:`.build`), or by the pure-torch reference.

The compiled kernels take float32 CPU input; they read channels-last memory directly (other
layouts are converted first) and return channels-last output. Other dtypes or devices run the
reference.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import torch
from torch import nn

from ..nn import BinaryConv2d, BinaryLayer, BinaryLinear, Maxout
from .build import active_kernel, load_library, path_code
from .errors import DeployError, DeployInputError
from .packing import pack_weight_signs, tap_popcounts
from .plan_op import PlanOp, check_layout
from .reference import UNIT_ROUNDOFF, packed_conv_reference


def refuse_tracing(owner: str) -> None:
    """Raise when ``torch.jit.trace``, ``torch.export`` or ``torch.onnx.export`` runs a deployed
    module: the compiled kernels run outside torch, so a trace would record their outputs as
    constants."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        raise DeployError(
            f"{owner} cannot be traced or exported (torch.jit.trace, torch.export, "
            "torch.onnx.export): its packed kernels run outside torch and a trace would freeze "
            "their outputs; call the deployed model directly (torch.compile works around them), "
            "or export the fake-quantized model"
        )


def refuse_scripting(owner: str) -> None:
    """``torch.jit.script`` calls ``__prepare_scriptable__`` first: refuse there, in one line."""
    raise DeployError(
        f"{owner} cannot be scripted (torch.jit.script): its packed kernels are C++ calls "
        "TorchScript cannot run; call the deployed model directly, or script the fake-quantized "
        "model"
    )


def guarded_apply(owner: str, fn: Any, *, keep_contiguous: bool) -> Any:
    """The tensor function a deployed module's ``_apply`` may run in place of ``fn``.

    Deployed modules run float32 on the CPU; their packed state includes float64 coefficients
    and int64 words the kernels read by address. A cast to float32 on the CPU (``.float()``,
    ``.to(torch.float32)``, ``.cpu()``, ``share_memory()``) is allowed and leaves the float64
    buffers as they are; any other dtype or device is refused with a :class:`DeployError`.
    ``keep_contiguous`` restores the dense layout a ``memory_format`` change would alter.
    """
    try:
        probe32 = fn(torch.zeros(1, 1, 1, 1))
        probe64 = fn(torch.zeros(1, 1, 1, 1, dtype=torch.float64))
    except Exception as e:  # e.g. .cuda() without CUDA
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(
            f"{owner} runs float32 on the CPU and cannot be moved or cast ({reason}); deploy "
            "again, or move/cast the fake-quantized model instead"
        ) from None
    if (
        probe32.dtype != torch.float32
        or probe32.device.type != "cpu"
        or (probe64.device.type != "cpu")
    ):
        raise DeployError(
            f"{owner} runs float32 on the CPU; casting or moving it to {probe32.dtype} on "
            f"{probe32.device} is not supported (its packed kernels read float32 input and "
            "float64 coefficients); cast the input instead, or use the fake-quantized model"
        )
    keep64 = probe64.dtype != torch.float64

    def apply(t: torch.Tensor) -> torch.Tensor:
        if keep64 and t.dtype == torch.float64:
            return t
        out = fn(t)
        if keep_contiguous and isinstance(out, torch.Tensor) and not out.is_contiguous():
            out = out.contiguous()
        return out

    return apply


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _static_padding(layer: nn.Conv2d) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` zero padding, or ``None`` for dynamic "same" padding."""
    if getattr(layer, "dynamic_same_padding", False):
        return None
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation
    if layer.padding == "valid":
        return (0, 0, 0, 0)
    if layer.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _pair(layer.padding)
    return (ph, ph, pw, pw)


def _norm_affine(norm: nn.Module | None, out: int) -> tuple[torch.Tensor, ...]:
    """``(scale, shift, |mean|)`` of an eval-mode BatchNorm (identity for ``None``), float64."""
    if norm is None:
        one = torch.ones(out, dtype=torch.float64)
        return one, torch.zeros_like(one), torch.zeros_like(one)
    mean = norm.running_mean.detach().double().cpu()
    var = norm.running_var.detach().double().cpu()
    scale = 1.0 / torch.sqrt(var + norm.eps)
    shift = -mean * scale
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double().cpu()
        shift = shift * norm.weight.detach().double().cpu() + norm.bias.detach().double().cpu()
    return scale, shift, mean.abs()


def input_threshold(layer: BinaryLayer) -> float | None:
    """``t`` with ``layer.input_signs(x) == (x >= t)``, or ``None`` for an unknown method.

    AdaBin compares with ``beta_a`` in both activation forms; the sign baselines (BNN, XNOR)
    take ``sgn(x) > 0``, i.e. ``x >= 0`` (``-0.0`` included).
    """
    if layer.method == "adabin":
        return float(layer.act_beta.detach().float())
    if layer.method in ("sign", "xnor"):
        return 0.0
    return None


def unsupported_reason(layer: BinaryLayer) -> str | None:
    """Why ``layer`` cannot become a packed layer (``None`` if it can)."""
    if input_threshold(layer) is None:
        return f"no packed kernel for method {layer.method!r}"
    if not layer.binarize_weights and not layer.frozen:
        return "weight binarization is switched off (the weight is float)"
    if not layer.binarize_activations:
        return "activation binarization is switched off (the input is float)"
    if isinstance(layer, BinaryConv2d) and layer.padding_mode != "zeros":
        return f"padding_mode {layer.padding_mode!r} (only zero padding is packed)"
    if not isinstance(layer, (BinaryConv2d, BinaryLinear)):
        return f"unknown binary layer type {type(layer).__name__}"
    return None


class _PackedLayer(nn.Module):
    """Shared state and kernel call of the packed conv and linear layers."""

    wbits: torch.Tensor
    pcw: torch.Tensor
    coefficients: torch.Tensor
    kernel_coefficients: torch.Tensor
    error_bound: torch.Tensor

    def _setup(
        self,
        layer: BinaryLayer,
        signs: torch.Tensor,
        weight_set: tuple[torch.Tensor, torch.Tensor],
        norm: nn.Module | None,
    ) -> None:
        reason = unsupported_reason(layer)
        if reason is not None:
            raise DeployError(f"{type(layer).__name__} cannot be packed: {reason}")
        self.method, self.act_form = layer.method, layer.act_form
        self.folded_norm = norm is not None
        self.residual = False
        self.fused_maxout: InferenceMaxout | None = None
        self.adds_extra = False
        self.next_input: tuple[float, int] | None = None
        out = self.out_channels
        signs = signs.detach().cpu().to(torch.bool).reshape(out, -1, *self.kernel_size)
        self.register_buffer("wbits", pack_weight_signs(signs, self.groups))
        self.register_buffer("pcw", tap_popcounts(signs))
        alpha_w, beta_w = (t.detach().double().cpu().reshape(-1) for t in weight_set)
        self.threshold = float(input_threshold(layer))  # type: ignore[arg-type]
        alpha_a, c_a = layer.activation_binary_set()
        bias = layer.bias.detach().double().cpu() if layer.bias is not None else None
        scale, shift, mean_abs = _norm_affine(norm, out)
        b = bias if bias is not None else torch.zeros(out, dtype=torch.float64)
        coefficients = torch.stack([
            scale * alpha_w * alpha_a,
            scale * alpha_w * c_a,
            scale * beta_w * alpha_a,
            scale * beta_w * c_a,
            scale * b + shift,
        ])  # fmt: skip
        self.register_buffer("coefficients", coefficients)
        self.register_buffer(
            "kernel_coefficients", torch.stack([-2.0 * coefficients[0], coefficients[2]]).float()
        )
        n = signs.shape[1] * signs.shape[2] * signs.shape[3]
        magnitude = n * (alpha_a + abs(c_a)) * (alpha_w + beta_w.abs()) + b.abs() + mean_abs
        bound = (n + 16) * UNIT_ROUNDOFF * (scale.abs() * magnitude + shift.abs())
        self.register_buffer("error_bound", bound)

    # ------------------------------------------------------------------ checks
    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        return super()._apply(guarded_apply(type(self).__name__, fn, keep_contiguous=True), recurse)

    def __prepare_scriptable__(self) -> Any:
        refuse_scripting(type(self).__name__)

    def _check_call(self, x: torch.Tensor) -> None:
        refuse_tracing(type(self).__name__)
        if self.training:
            raise DeployError(
                f"{type(self).__name__} is inference only but was put in training mode; call "
                ".eval() (train the fake-quantized model, then deploy it again)"
            )
        if x.requires_grad and torch.is_grad_enabled():
            raise DeployError(
                f"{type(self).__name__} is inference only: its input requires grad; run it "
                "under torch.no_grad() or pass a tensor that does not require grad"
            )

    def train(self, mode: bool = True):
        if mode:
            raise DeployError(
                f"{type(self).__name__} is inference only and cannot be trained; train the "
                "fake-quantized model and deploy it again"
            )
        return super().train(False)

    # ------------------------------------------------------------------ kernel
    def paddings(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` zero padding for an ``h x w`` input."""
        if self.padding is not None:
            return self.padding
        pads = []
        for size, k, s, d in zip((h, w), self.kernel_size, self.stride, self.dilation):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)  # type: ignore[return-value]

    def pack_input(self, x: torch.Tensor, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Binarize and bit-pack float32 NCHW input with a compiled path: ``(words, counts)``.

        ``words``: ``(N*H*W*groups*K,)`` int64, channels packed per pixel (NHWC order);
        ``counts``: ``(N*H*W*groups,)`` int32 sums of the input signs per pixel and group.
        """
        lib = load_library()
        n, c, h, w = x.shape
        xl = x.permute(0, 2, 3, 1)
        if not xl.is_contiguous():
            xl = xl.contiguous()
        g = self.groups
        k = (c // g + 63) // 64
        act = torch.empty((n * h * w * g * k,), dtype=torch.int64)
        sa = torch.empty((n * h * w * g,), dtype=torch.int32)
        lib.autobin_pack(xl.data_ptr(), n * h * w, c, g, self.threshold, path_code(path),
                         torch.get_num_threads(), act.data_ptr(), sa.data_ptr())  # fmt: skip
        return act, sa

    def _static_args(self) -> tuple:
        """The call's per-layer arguments (buffer addresses, geometry), rebuilt if the buffers
        moved (a copy, ``load_state_dict``)."""
        b = self._buffers  # (module attribute lookups cost microseconds on every call)
        key = (b["wbits"].data_ptr(), b["pcw"].data_ptr(), b["coefficients"].data_ptr(),
               b["kernel_coefficients"].data_ptr(), self.threshold)  # fmt: skip
        if self.__dict__.get("_static_key") != key:
            self._check_buffers()
            (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
            coef, kcoef = self.coefficients, self.kernel_coefficients
            self._static = (
                self.groups, self.in_channels // self.groups, self.threshold,
                self.wbits.data_ptr(), self.pcw.data_ptr(), self.out_channels // self.groups,
                kh, kw, sh, sw, dh, dw, coef[0].data_ptr(), coef[1].data_ptr(),
                coef[3].data_ptr(), coef[4].data_ptr(), kcoef[0].data_ptr(), kcoef[1].data_ptr(),
            )  # fmt: skip
            self._static_key = key
        return self._static

    def _check_buffers(self) -> None:
        """The kernels read the buffers by address: refuse any that were replaced by a tensor of
        another dtype, device or layout (``load_state_dict(assign=True)``, direct assignment)."""
        want = {"wbits": torch.int64, "pcw": torch.int32, "coefficients": torch.float64,
                "kernel_coefficients": torch.float32}  # fmt: skip
        for name, dtype in want.items():
            t = getattr(self, name)
            if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous():
                raise DeployError(
                    f"{type(self).__name__}.{name} is a {t.dtype} {t.device} tensor"
                    f"{'' if t.is_contiguous() else ' (not contiguous)'}; the kernels need a "
                    f"contiguous {dtype} CPU tensor: deploy the model again"
                )

    def fuse_glue(
        self,
        *,
        maxout: InferenceMaxout | None = None,
        adds_extra: bool = False,
        next_input: tuple[float, int] | None = None,
    ) -> None:
        """Take over the glue after this layer (see :func:`autobin.deploy.model.deploy`).

        Args:
            maxout: a Maxout over the output channels, applied in the epilogue.
            adds_extra: ``forward(x, extra)`` adds ``extra`` (shaped like the output) before
                the Maxout: the graph's shortcut add.
            next_input: ``(threshold, groups)`` of the packed layer that consumes the output:
                the epilogue also writes the output binarized and bit-packed for it.
        """
        self.fused_maxout = maxout
        self.adds_extra = bool(adds_extra)
        self.next_input = next_input

    def _packed_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Addresses of ``x`` already packed for this layer by the producer's epilogue, or 0."""
        bits = getattr(x, "_autobin_bits", None)
        if bits is None:
            return 0, 0
        version, threshold, groups, act, sa = bits
        if version != x._version or threshold != self.threshold or groups != self.groups:
            return 0, 0  # changed in place since, or packed for another layer
        return act.data_ptr(), sa.data_ptr()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles drop the prepared calls (they hold addresses)."""
        state = dict(super().__getstate__())
        state.pop("_ops", None)
        return state

    def call_op(self, n: int, h: int, w: int, glue: bool = True) -> PlanOp:
        """The kernel's record of a call on ``(n, C, h, w)`` input: geometry, buffer addresses
        and, with ``glue``, the fused Maxout and next layer's input threshold. Built once per
        input shape (rebuilt when a buffer moves), so a call converts few arguments.

        Raises:
            DeployInputError: the input is too small for the kernel.
            DeployError: a fused residual whose output is not shaped like the input.
        """
        static = self._static_args()
        maxout = self.fused_maxout if glue else None
        key = (n, h, w, glue, self.residual, self.next_input if glue else None,
               None if maxout is None else maxout.gamma_pos.data_ptr(),
               None if maxout is None else maxout.gamma_neg.data_ptr())  # fmt: skip
        cache = self.__dict__.get("_ops")
        if cache is None or cache[0] is not static:
            cache = self._ops = (static, {})
        op = cache[1].get(key)
        if op is not None:
            return op
        pt, _, pl, _ = self.paddings(h, w)
        oh, ow = self._output_size(torch.empty(0, 0, h, w))
        if oh <= 0 or ow <= 0:
            raise DeployInputError(
                f"input of {h}x{w} is too small for kernel {self.kernel_size} with padding "
                f"{self.paddings(h, w)} and dilation {self.dilation}"
            )
        c, o = self.in_channels, self.out_channels
        if self.residual and (oh, ow, o) != (h, w, c):
            raise DeployError(
                f"fused residual needs an output shaped like the input, got {(o, oh, ow)} "
                f"for input {(c, h, w)}"
            )
        check_layout()
        op = PlanOp()
        op.kind = 0
        op.inp = op.extra = op.out = op.in_act = op.in_sa = op.next_act = op.next_sa = -1
        (op.groups, op.cg, op.thr, op.wt, op.pcw, op.og, op.kh, op.kw, op.sh, op.sw, op.dh,
         op.dw, op.cdot, op.csw, op.cn, op.bias, op.m, op.csa) = static  # fmt: skip
        op.n, op.h, op.w, op.c, op.pt, op.pl, op.oh, op.ow = n, h, w, c, pt, pl, oh, ow
        op.residual = int(self.residual)
        if maxout is not None:
            op.gp, op.gn = maxout.gamma_pos.data_ptr(), maxout.gamma_neg.data_ptr()
        if glue and self.next_input is not None:
            op.next_thr, op.next_groups = self.next_input
        if len(cache[1]) >= 16:
            cache[1].clear()
        cache[1][key] = op
        return op

    def _kernel_conv(
        self, x: torch.Tensor, path: str, extra: torch.Tensor | None = None, glue: bool = True
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        xl = x.permute(0, 2, 3, 1)
        if not xl.is_contiguous():
            xl = xl.contiguous()
        op = self.call_op(n, h, w, glue)
        oh, ow, o = op.oh, op.ow, self.out_channels
        out = torch.empty((n, oh, ow, o), dtype=torch.float32)
        extra_ptr = 0
        if extra is not None:
            el = extra.permute(0, 2, 3, 1)
            if not el.is_contiguous():
                el = el.contiguous()
            extra_ptr = el.data_ptr()
        nact = nsa = None
        if op.next_groups:
            next_groups = op.next_groups
            words = n * oh * ow * next_groups * ((o // next_groups + 63) // 64)
            nact = torch.empty((words,), dtype=torch.int64)
            nsa = torch.empty((n * oh * ow * next_groups,), dtype=torch.int32)
        in_act, in_sa = self._packed_input(x)
        load_library().autobin_conv_op(
            ctypes.byref(op), xl.data_ptr(), out.data_ptr(), extra_ptr, in_act, in_sa,
            0 if nact is None else nact.data_ptr(), 0 if nsa is None else nsa.data_ptr(),
            path_code(path), torch.get_num_threads(),
        )  # fmt: skip
        y = out.permute(0, 3, 1, 2)
        if nact is not None:
            y._autobin_bits = (y._version, op.next_thr, op.next_groups, nact, nsa)
        return y

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's own output (with its fused residual), without the fused glue."""
        path = active_kernel()
        if path == "reference" or x.dtype != torch.float32 or x.device.type != "cpu":
            y = packed_conv_reference(self, x)
            return y + x if self.residual else y
        return self._kernel_conv(x, path, glue=False)

    def _conv_with_glue(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The layer's output, ``+ extra``, through the fused Maxout; the kernel does it all in
        its epilogue where it can, else the same steps run one by one (same values)."""
        path = active_kernel()
        kernel = path != "reference" and x.dtype == torch.float32 and x.device.type == "cpu"
        if kernel and extra is not None:
            o, (oh, ow) = self.out_channels, self._output_size(x)
            kernel = extra.shape == (x.shape[0], o, oh, ow) and extra.dtype == torch.float32
        if kernel:
            return self._kernel_conv(x, path, extra)
        y = self._conv(x)
        if extra is not None:
            y = y + extra
        return self.fused_maxout(y) if self.fused_maxout is not None else y

    def _output_size(self, x: torch.Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        pt, pb, pl, pr = self.paddings(h, w)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (
            w + pl + pr - dw * (kw - 1) - 1
        ) // sw + 1

    def packed_bytes(self) -> int:
        """Bytes of this layer's state (packed weights, tap counts, coefficients)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def _packed_repr(self) -> str:
        bn = ", bn folded" if self.folded_norm else ""
        res = ", + input" if self.residual else ""
        glue = ", + extra" if self.adds_extra else ""
        glue += ", maxout" if self.fused_maxout is not None else ""
        glue += ", packs next input" if self.next_input is not None else ""
        return f"method={self.method}, threshold={self.threshold:.4g}{bn}{res}{glue}"


class PackedConv2d(_PackedLayer):
    """Packed binary 2-D convolution, built from a :class:`~autobin.nn.BinaryConv2d`.

    Equals the fake-quantized layer in eval mode (followed by ``norm`` when one is folded) up to
    float rounding bounded by :attr:`error_bound` (per output channel, see :mod:`.reference`).
    """

    def __init__(
        self,
        layer: BinaryConv2d,
        *,
        norm: nn.Module | None = None,
        signs: torch.Tensor | None = None,
        weight_set: tuple[torch.Tensor, torch.Tensor] | None = None,
        residual: bool = False,
    ) -> None:
        """Pack ``layer``.

        Args:
            layer: the binary conv (frozen or not).
            norm: an eval-mode ``BatchNorm2d`` applied right after the layer, folded in.
            residual: add the layer's input to its output (a fused Bi-Real shortcut; the output
                must have the input's shape); adds one float rounding to :attr:`error_bound`.
            signs: boolean weight signs (default ``layer.weight_signs()``), e.g. a zoo's.
            weight_set: ``(alpha_w, beta_w)`` (default ``layer.weight_binary_set()``).
        """
        super().__init__()
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size = _pair(layer.kernel_size)
        self.stride, self.dilation = _pair(layer.stride), _pair(layer.dilation)
        self.groups = int(layer.groups)
        self.padding = _static_padding(layer)
        self._setup(
            layer,
            layer.weight_signs() if signs is None else signs,
            layer.weight_binary_set() if weight_set is None else weight_set,
            norm,
        )
        self.residual = bool(residual)
        self.eval()

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        self._check_call(x)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DeployInputError(
                f"PackedConv2d expects input (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if (extra is not None) != self.adds_extra:
            raise DeployError(
                "PackedConv2d: a second input is "
                + ("required (its fused shortcut add)" if self.adds_extra else "not expected")
            )
        if self.fused_maxout is None and extra is None and self.next_input is None:
            return self._conv(x)
        return self._conv_with_glue(x, extra)

    def conv_output(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's own output (BatchNorm and residual included), without the fused glue."""
        self._check_call(x)
        with torch.no_grad():
            return self._conv(x)

    def extra_repr(self) -> str:
        pad = "dynamic-same" if self.padding is None else self.padding
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={pad}, dilation={self.dilation}, "
            f"groups={self.groups}, {self._packed_repr()}"
        )


class PackedLinear(_PackedLayer):
    """Packed binary linear layer (a 1x1 packed convolution over the leading dimensions)."""

    def __init__(
        self,
        layer: BinaryLinear,
        *,
        norm: nn.Module | None = None,
        signs: torch.Tensor | None = None,
        weight_set: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Pack ``layer``; arguments as for :class:`PackedConv2d` (``norm`` a BatchNorm1d)."""
        super().__init__()
        self.in_channels, self.out_channels = layer.in_features, layer.out_features
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.kernel_size, self.stride, self.dilation = (1, 1), (1, 1), (1, 1)
        self.groups, self.padding = 1, (0, 0, 0, 0)
        signs = layer.weight_signs() if signs is None else signs
        self._setup(
            layer,
            signs.reshape(self.out_features, self.in_features, 1, 1),
            layer.weight_binary_set() if weight_set is None else weight_set,
            norm,
        )
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_call(x)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise DeployInputError(
                f"PackedLinear expects input (..., {self.in_features}), got {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        rows = x.reshape(math.prod(lead), self.in_features, 1, 1)
        y = self._conv(rows)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self._packed_repr()}"


class InferenceMaxout(nn.Module):
    """Inference-only :class:`~autobin.nn.Maxout`: ``x * (gamma_pos if x >= 0 else gamma_neg)``.

    One pass of the compiled kernel on channels-last float32 CPU input (the same single rounding
    as the fake-quantized ``max(x,0)*gamma_pos + min(x,0)*gamma_neg``, so the values are equal);
    any other input runs the original module.
    """

    def __init__(self, maxout: Maxout) -> None:
        super().__init__()
        self.maxout = maxout
        self.num_channels = maxout.num_channels
        self.register_buffer("gamma_pos", maxout.gamma_pos.detach().float().contiguous().clone())
        self.register_buffer("gamma_neg", maxout.gamma_neg.detach().float().contiguous().clone())

    def _channels_last_view(self, x: torch.Tensor) -> torch.Tensor | None:
        if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() not in (2, 3, 4):
            return None
        dim = self.maxout._dim(x)
        if x.dim() == 4 and dim == 1:
            view = x.permute(0, 2, 3, 1)
        elif dim == x.dim() - 1:
            view = x
        else:
            return None
        return view if view.is_contiguous() else None

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        return super()._apply(guarded_apply("InferenceMaxout", fn, keep_contiguous=True), recurse)

    def __prepare_scriptable__(self) -> Any:
        refuse_scripting("InferenceMaxout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refuse_tracing("InferenceMaxout")
        view = self._channels_last_view(x)
        path = active_kernel() if view is not None else "reference"
        if path == "reference":
            return self.maxout(x)
        out = torch.empty_like(x)  # same strides: the permuted view of out is contiguous too
        out_view = out.permute(0, 2, 3, 1) if view is not x else out
        load_library().autobin_maxout(
            view.data_ptr(), view.numel() // self.num_channels, self.num_channels,
            self.gamma_pos.data_ptr(), self.gamma_neg.data_ptr(), torch.get_num_threads(),
            out_view.data_ptr(),
        )  # fmt: skip
        return out

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


__all__ = [
    "InferenceMaxout",
    "PackedConv2d",
    "PackedLinear",
    "guarded_apply",
    "input_threshold",
    "refuse_scripting",
    "refuse_tracing",
    "unsupported_reason",
]
