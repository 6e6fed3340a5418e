"""Float parts of a deployed model in int8 (:class:`Int8Conv2d`, AVX-512 VNNI), bfloat16
(:class:`Bf16Conv2d`, AVX-512 BF16) or float32 by autobin's kernel (:class:`Fp32Conv2d`).

The stem, downsample convs and other float convs of a binary network cost as much as all its
packed layers together in float32. ``deploy(model, float_parts=...)`` picks per layer:

* ``"fp32"``: every float layer stays float32 in torch (BatchNorm folded): the exact behaviour.
* ``"fp32-kernel"``: every eligible float conv in float32 by autobin's kernel: full precision,
  but inside the compiled chains, with a following Maxout and the next packed layer's
  binarization and packing in its epilogue (sums in another order than torch's: within float32
  rounding, not bit for bit).
* ``"int8"`` / ``"bf16"``: every eligible float conv in that precision (refused where the CPU
  lacks the instructions).
* ``"auto"`` (default): the stem (the conv applied to the model's input) in int8 where the CPU
  has VNNI, every other eligible float conv in bf16 where it has AVX-512 BF16, float32 elsewhere;
  for a model family that keeps its float convs at full precision (detectors, whose mAP lost
  1.5-2.2 points in int8/bf16), ``"fp32-kernel"``.

Arithmetic (``kernel.cpp``, ``int8_conv_image``): per image the input is quantized to uint8
with ``sx = (max(x, 0) - min(x, 0)) / 255`` and a zero point ``zx`` (so 0, the padding, is
exact); the weights per output channel to int8 with ``ws = max|w| / 127``; the integer sums are
exact (int32) and ``y = (acc - zx * sum(wq)) * sx * ws + bias``. :func:`int8_conv_reference`
computes the same in torch (the tests' oracle).

bfloat16 (``bf16_conv_image``): input and weights rounded to bf16 (nearest even); each
product is exact in float32 and summed in float32 (:func:`bf16_conv_reference`).

Accuracy check, per layer (``auto``): a conv is eligible when it has groups 1, dilation 1, zero
static padding and at most 4,096 input values per output (``C * kh * kw``). int8 quantizes the
input with one scale per image, which is fine for an image (bounded, dense) but loses the small
activations near the binarization thresholds deeper in the network: measured on the committed
zoo entry ``resnet18.adabin_mnist5k`` (1,000 test images; 96.7 % fake-quantized and fp32
deployed), int8 costs 0.0 point at the stem but 0.5 point at ``layer3.0.downsample.0`` and 0.2
at ``layer4.0.downsample.0``. bf16 keeps 8 significant bits of every value, so ``auto`` uses
int8 for the stem only and bf16 for the other float convs; its weights must also pass
:data:`MAX_WEIGHT_ERROR` (relative RMS weight quantization error, 1 %). The slow test
``test_deployed_zoo_entry_reaches_its_recorded_accuracy`` holds ``auto`` to the recorded
accuracy within 0.1 point.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .build import active_kernel, cpu_has_bf16, cpu_has_vnni, load_library, path_code
from .errors import DeployError, DeployInputError
from .layers import InferenceMaxout, guarded_apply, refuse_scripting, refuse_tracing

FloatParts = Literal["auto", "fp32", "fp32-kernel", "int8", "bf16"]
FLOAT_PARTS: tuple[str, ...] = ("auto", "fp32", "fp32-kernel", "int8", "bf16")
MAX_WEIGHT_ERROR = 0.01
"""Largest relative RMS weight quantization error ``auto`` accepts for an int8 layer."""
_MAX_ROW_INPUTS = 4096


def _static_pads(conv: nn.Conv2d) -> tuple[int, int, int, int] | None:
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0, 0, 0)
        return None  # "same": asymmetric in general; leave it float
    ph, pw = conv.padding
    return (int(ph), int(ph), int(pw), int(pw))


def int8_ineligible(conv: nn.Module) -> str | None:
    """Why a float conv cannot run as :class:`Int8Conv2d` (``None`` if it can)."""
    if type(conv) is not nn.Conv2d:
        return "not a plain nn.Conv2d"
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1):
        return "grouped or dilated"
    if conv.padding_mode != "zeros" or _static_pads(conv) is None:
        return "padding is not static zero padding"
    kh, kw = conv.kernel_size
    if conv.in_channels * kh * kw > _MAX_ROW_INPUTS:
        return f"more than {_MAX_ROW_INPUTS} inputs per output"
    return None


def _quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``(q (O, C, kh, kw) int8, scale (O,) float32)``."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=(1, 2, 3)) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale.reshape(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
    return q, scale


def weight_error(conv: nn.Conv2d) -> float:
    """Relative RMS error of the conv's int8 weights (the ``auto`` accuracy check)."""
    q, scale = _quantize_weight(conv.weight)
    w = conv.weight.detach().float()
    err = (q.float() * scale.reshape(-1, 1, 1, 1) - w).norm()
    return float(err / w.norm().clamp_min(1e-30))


def _quantize_input(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image uint8 quantization as the kernel does it: ``(q, sx, zx)`` (q as float)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.amin(dim=1).clamp(max=0.0)
    hi = flat.amax(dim=1).clamp(min=0.0)
    sx = (hi - lo) / 255.0
    sx = torch.where(sx > 0, sx, torch.ones_like(sx))
    inv = 1.0 / sx
    zx = torch.round(-lo * inv).clamp(0, 255)
    q = (torch.round(x * inv.reshape(-1, 1, 1, 1)) + zx.reshape(-1, 1, 1, 1)).clamp(0, 255)
    return q, sx, zx


class _LowPrecisionConv(nn.Module):
    """What the int8, bf16 and fp32-kernel convs share: geometry, cast guard, input check,
    call preparation, output size, repr."""

    in_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, int, int, int]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        return super()._apply(guarded_apply(type(self).__name__, fn, keep_contiguous=True), recurse)

    def __prepare_scriptable__(self) -> Any:
        refuse_scripting(type(self).__name__)

    def _take_conv(self, conv: nn.Conv2d, maxout: InferenceMaxout | None, what: str) -> None:
        """Refuse a conv the kernels cannot run; keep its geometry and the fused Maxout."""
        reason = int8_ineligible(conv)
        if reason is not None:
            raise DeployError(f"{type(conv).__name__} cannot run {what}: {reason}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(int(k) for k in conv.kernel_size)
        self.stride = tuple(int(s) for s in conv.stride)
        self.padding = _static_pads(conv)
        self.maxout = maxout

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DeployInputError(
                f"{type(self).__name__} expects input (N, {self.in_channels}, H, W), got "
                f"{tuple(x.shape)}"
            )

    def _kernel_call(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """For the kernel's call on ``x`` (N, C, H, W): the channels-last input, the
        (N, oh, ow, O) output to fill, the geometry ``(n, h, w, c, kh, kw, sh, sw, pt, pl, oh,
        ow)`` and the fused Maxout's slope addresses (0 without one)."""
        n, c, h, w = x.shape
        oh, ow = self._output_size(h, w)
        xl = x.permute(0, 2, 3, 1)
        if not xl.is_contiguous():
            xl = xl.contiguous()
        out = torch.empty((n, oh, ow, self.out_channels), dtype=torch.float32)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        pt, _, pl, _ = self.padding
        slopes = (0, 0)
        if self.maxout is not None:
            slopes = (self.maxout.gamma_pos.data_ptr(), self.maxout.gamma_neg.data_ptr())
        return xl, out, (n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow), slopes

    def _precision(self) -> str:
        """How the conv computes, for its repr (``"int8 (weight error 0.41 %)"``)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        mo = ", maxout" if self.maxout is not None else ""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, {self._precision()}{mo}"
        )

    def _output_size(self, h: int, w: int) -> tuple[int, int]:
        pt, pb, pl, pr = self.padding
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        if oh <= 0 or ow <= 0:
            raise DeployInputError(f"input of {h}x{w} is too small for kernel {self.kernel_size}")
        return oh, ow


class Int8Conv2d(_LowPrecisionConv):
    """A float conv (BatchNorm folded) run in int8 by the AVX-512 VNNI kernel.

    Optionally applies a following channel Maxout in its epilogue. Input the kernel cannot run
    (another dtype, device, the ``reference`` kernel path) runs :func:`int8_conv_reference`,
    the same arithmetic in torch.
    """

    def __init__(self, conv: nn.Conv2d, maxout: InferenceMaxout | None = None) -> None:
        super().__init__()
        self._take_conv(conv, maxout, "in int8")
        self.weight_error = weight_error(conv)
        q, scale = _quantize_weight(conv.weight)
        o, c, kh, kw = q.shape
        r4 = (kw * c + 3) // 4
        op = (o + 63) // 64 * 64
        rows = q.permute(0, 2, 3, 1).reshape(o, kh, kw * c)
        rows = F.pad(rows, (0, 4 * r4 - kw * c))
        rows = F.pad(rows.reshape(o, kh, r4, 4), (0, 0, 0, 0, 0, 0, 0, op - o))
        self.r4, self.padded_out = r4, op
        self.register_buffer("wq", rows.permute(1, 2, 0, 3).contiguous())
        self.register_buffer("qweight", q)
        self.register_buffer("sumw", q.reshape(o, -1).sum(dim=1, dtype=torch.int32))
        self.register_buffer("wscale", scale.contiguous())
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(o)
        self.register_buffer("bias", bias.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refuse_tracing("Int8Conv2d")
        self._check_input(x)
        kernel = x.dtype == torch.float32 and x.device.type == "cpu"
        if not kernel or active_kernel() == "reference" or not cpu_has_vnni():
            y = int8_conv_reference(self, x)
            return self.maxout(y) if self.maxout is not None else y
        xl, out, geometry, (gp, gn) = self._kernel_call(x)
        status = load_library().autobin_int8_conv(
            xl.data_ptr(), *geometry, self.wq.data_ptr(), self.r4, self.out_channels,
            self.padded_out, self.sumw.data_ptr(), self.wscale.data_ptr(), self.bias.data_ptr(),
            gp, gn, torch.get_num_threads(), out.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise DeployError("Int8Conv2d: this CPU lacks AVX-512 VNNI")
        return out.permute(0, 3, 1, 2)

    def _precision(self) -> str:
        return f"int8 (weight error {100 * self.weight_error:.2f} %)"


def _bf16_bits(t: torch.Tensor) -> torch.Tensor:
    """bfloat16 values as their int16 bit patterns (round to nearest even)."""
    return t.to(torch.bfloat16).view(torch.int16)


class Bf16Conv2d(_LowPrecisionConv):
    """A float conv (BatchNorm folded) run in bfloat16 by the AVX-512 BF16 kernel.

    Optionally applies a following channel Maxout in its epilogue; input the kernel cannot run
    runs :func:`bf16_conv_reference`.
    """

    def __init__(self, conv: nn.Conv2d, maxout: InferenceMaxout | None = None) -> None:
        super().__init__()
        self._take_conv(conv, maxout, "in bf16")
        w = conv.weight.detach().float()
        self.weight_error = _bf16_weight_error(conv)
        o, c, kh, kw = w.shape
        r2 = (kw * c + 1) // 2
        op = (o + 63) // 64 * 64
        rows = _bf16_bits(w).permute(0, 2, 3, 1).reshape(o, kh, kw * c)
        rows = F.pad(rows, (0, 2 * r2 - kw * c))
        rows = F.pad(rows.reshape(o, kh, r2, 2), (0, 0, 0, 0, 0, 0, 0, op - o))
        self.r2, self.padded_out = r2, op
        self.register_buffer("wb", rows.permute(1, 2, 0, 3).contiguous())
        self.register_buffer("weight_bits", _bf16_bits(w).contiguous())  # for the reference
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(o)
        self.register_buffer("bias", bias.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refuse_tracing("Bf16Conv2d")
        self._check_input(x)
        kernel = x.dtype == torch.float32 and x.device.type == "cpu"
        if not kernel or active_kernel() == "reference" or not cpu_has_bf16():
            y = bf16_conv_reference(self, x)
            return self.maxout(y) if self.maxout is not None else y
        xl, out, geometry, (gp, gn) = self._kernel_call(x)
        status = load_library().autobin_bf16_conv(
            xl.data_ptr(), *geometry, self.wb.data_ptr(), self.r2, self.out_channels,
            self.padded_out, self.bias.data_ptr(), gp, gn, torch.get_num_threads(),
            out.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise DeployError("Bf16Conv2d: this CPU lacks AVX-512 BF16")
        return out.permute(0, 3, 1, 2)

    def _precision(self) -> str:
        return f"bf16 (weight error {100 * self.weight_error:.2f} %)"


class Fp32Conv2d(_LowPrecisionConv):
    """A float conv (BatchNorm folded) run in float32 by autobin's kernel
    (``float_parts="fp32-kernel"``).

    Full precision, but in the kernel library, so that it runs inside compiled chains
    (:mod:`.plan`) with a following channel Maxout in its epilogue and, where a packed layer
    reads its output, that layer's binarization and bit-packing too (it skips its packing
    pass). The kernel sums the products in another order than torch: outputs agree with the
    torch conv within float32 rounding of the sum, not bit for bit. Input the kernel cannot run
    (another dtype, device, the ``reference`` kernel path) runs the torch conv
    (:func:`fp32_conv_reference`).
    """

    def __init__(self, conv: nn.Conv2d, maxout: InferenceMaxout | None = None) -> None:
        super().__init__()
        self._take_conv(conv, maxout, "in the fp32 kernel")
        self.weight_error = 0.0
        w = conv.weight.detach().float()
        o, c, kh, kw = w.shape
        op = (o + 15) // 16 * 16
        self.padded_out = op
        rows = w.permute(2, 3, 1, 0).reshape(kh, kw * c, o)
        self.register_buffer("wf", F.pad(rows, (0, op - o)).contiguous())
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(o)
        self.register_buffer("bias", F.pad(bias, (0, op - o)).contiguous())

    def torch_weight(self) -> torch.Tensor:
        """The conv's weight as ``(O, C, kh, kw)`` (read back from the kernel's layout)."""
        (kh, kw), o = self.kernel_size, self.out_channels
        return self.wf[:, :, :o].reshape(kh, kw, self.in_channels, o).permute(3, 2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refuse_tracing("Fp32Conv2d")
        self._check_input(x)
        path = active_kernel()
        if x.dtype != torch.float32 or x.device.type != "cpu" or path == "reference":
            y = fp32_conv_reference(self, x)
            return self.maxout(y) if self.maxout is not None else y
        xl, out, geometry, (gp, gn) = self._kernel_call(x)
        load_library().autobin_fp32_conv(
            xl.data_ptr(), *geometry, self.wf.data_ptr(), self.out_channels, self.padded_out,
            self.bias.data_ptr(), gp, gn, path_code(path), torch.get_num_threads(),
            out.data_ptr(), 0, 0.0, None, None,
        )  # fmt: skip
        return out.permute(0, 3, 1, 2)

    def _precision(self) -> str:
        return "fp32 kernel"


def fp32_conv_reference(layer: Fp32Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The fp32-kernel layer's conv in torch (float32; the kernel's sums differ in order)."""
    pt, pb, pl, pr = layer.padding
    bias = layer.bias[: layer.out_channels]
    xf = F.pad(x.float().cpu(), (pl, pr, pt, pb))
    y = F.conv2d(xf, layer.torch_weight(), bias, stride=layer.stride)
    return y.to(x.dtype).to(x.device)


def bf16_conv_reference(layer: Bf16Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The bf16 layer's output in torch: bf16-rounded input and weights, sums in float64 (the
    kernel sums the same exact products in float32)."""
    xb = x.float().cpu().to(torch.bfloat16).double()
    pt, pb, pl, pr = layer.padding
    weight = layer.weight_bits.view(torch.bfloat16).double()
    y = F.conv2d(F.pad(xb, (pl, pr, pt, pb)), weight, stride=layer.stride)
    return (y + layer.bias.double().reshape(1, -1, 1, 1)).to(x.dtype).to(x.device)


def int8_conv_reference(layer: Int8Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The int8 layer's output computed in torch (exact integer sums in float64)."""
    q, sx, zx = _quantize_input(x.float().cpu())
    pt, pb, pl, pr = layer.padding
    centred = F.pad(q - zx.reshape(-1, 1, 1, 1), (pl, pr, pt, pb))  # padding is x = 0
    acc = F.conv2d(centred.double(), layer.qweight.double(), stride=layer.stride)
    scale = (sx.reshape(-1, 1) * layer.wscale.reshape(1, -1)).float()
    y = acc.float() * scale.reshape(*scale.shape, 1, 1) + layer.bias.reshape(1, -1, 1, 1)
    return y.to(x.dtype).to(x.device)


def check_float_parts(float_parts: str) -> str:
    """Validate ``deploy``'s ``float_parts`` argument."""
    from ..errors import check_choice

    return check_choice(
        float_parts,
        {"auto": "int8 stem and bf16 elsewhere where the CPU has the instructions; a "
                 "detector's float convs in the fp32 kernel",
         "fp32": "float32 as before (exact)",
         "fp32-kernel": "float32 in autobin's kernel for every eligible float conv (fused into "
                        "compiled chains)",
         "int8": "int8 for every eligible float conv",
         "bf16": "bf16 for every eligible float conv"},
        "float_parts",
    )  # fmt: skip


def choose_precision(conv: nn.Module, float_parts: str, *, stem: bool) -> str:
    """``"int8"``, ``"bf16"`` or ``"fp32"`` for a float conv (see the module docstring);
    ``stem``: the conv is applied to the model's input."""
    if float_parts == "fp32" or int8_ineligible(conv) is not None:
        return "fp32"
    if float_parts == "fp32-kernel":
        return float_parts
    have = {"int8": cpu_has_vnni(), "bf16": cpu_has_bf16()}
    if float_parts in have:
        if not have[float_parts]:
            need = "AVX-512 VNNI" if float_parts == "int8" else "AVX-512 BF16"
            raise DeployError(
                f"float_parts={float_parts!r} needs {need}, which this CPU (or the kernel "
                "build) lacks; use float_parts='auto' or 'fp32'"
            )
        return float_parts
    wanted = "int8" if stem else "bf16"
    if not have[wanted]:
        return "fp32"
    error = weight_error(conv) if wanted == "int8" else _bf16_weight_error(conv)
    return wanted if error <= MAX_WEIGHT_ERROR else "fp32"


def _bf16_weight_error(conv: nn.Conv2d) -> float:
    w = conv.weight.detach().float()
    return float((w.to(torch.bfloat16).float() - w).norm() / w.norm().clamp_min(1e-30))


def low_precision_conv(
    conv: nn.Conv2d, precision: str, maxout: InferenceMaxout | None = None
) -> nn.Module:
    """The :class:`Int8Conv2d`, :class:`Bf16Conv2d` or :class:`Fp32Conv2d` of ``conv``."""
    kinds = {"int8": Int8Conv2d, "bf16": Bf16Conv2d, "fp32-kernel": Fp32Conv2d}
    return kinds[precision](conv, maxout)


__all__ = [
    "FLOAT_PARTS",
    "MAX_WEIGHT_ERROR",
    "Bf16Conv2d",
    "FloatParts",
    "Fp32Conv2d",
    "Int8Conv2d",
    "bf16_conv_reference",
    "check_float_parts",
    "choose_precision",
    "fp32_conv_reference",
    "int8_conv_reference",
    "int8_ineligible",
    "low_precision_conv",
    "weight_error",
]
