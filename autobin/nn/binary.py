"""Binary convolution and linear layers (1-bit weights and 1-bit activations).

:class:`BinaryConv2d` and :class:`BinaryLinear` subclass ``nn.Conv2d`` / ``nn.Linear`` and keep
their constructor signatures, adding keyword-only binarizer options. The method decides how the
latent float weight and the layer input are binarized:

================  =====================================  ===================================
method            weights                                activations (layer input)
================  =====================================  ===================================
``adabin``        ``alpha_w * sgn(u) + beta_w`` (AdaBin)  ``alpha_a * sgn(u) + beta_a`` (AdaBin)
``sign`` (BNN)    ``sgn(W)``                             ``sgn(x)``, clipped STE
``xnor``          ``mean|W[o]| * sgn(W)`` (XNOR-Net)       ``sgn(x)``, clipped STE
================  =====================================  ===================================

The public classes :class:`AdaBinConv2d`, :class:`AdaBinLinear`, :class:`SignConv2d`,
:class:`SignLinear`, :class:`XnorConv2d` and :class:`XnorLinear` fix the method.

Deployment view: every layer exposes its binary sets and signs, so a packed XNOR/popcount kernel
can reproduce it exactly (ADABIN.md section 6)::

    Wb = alpha_w[o] * s_w + beta_w[o]         weight_binary_set(), weight_signs()
    ab = alpha_a * s_a + c_a                  activation_binary_set(), input_signs(x)

Reference: Z. Tu, X. Chen, P. Ren, Y. Wang, "AdaBin: Improving Binary Neural Networks with
Adaptive Binary Sets", ECCV 2022.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..quantizers import (
    activation_center,
    adabin_activation,
    adabin_weight,
    adabin_weight_set,
    adabin_weight_signs,
    check_act_form,
    check_weight_estimator,
    effective_alpha,
    sgn,
    sign_activation,
    sign_weight,
    xnor_weight,
    xnor_weight_set,
)

Method = Literal["adabin", "sign", "xnor"]
METHODS: tuple[str, ...] = ("adabin", "sign", "xnor")


def check_method(method: str) -> str:
    """Return ``method`` if it is a known binarization method, else raise a ValueError."""
    if method not in METHODS:
        raise ValueError(
            f"unknown binarization method {method!r}; valid choices are {list(METHODS)} "
            "('adabin': AdaBin adaptive sets, 'sign': BNN {-1,+1}, 'xnor': XNOR-Net scaling)"
        )
    return method


class BinaryLayer:
    """Mixin shared by the binary conv and linear layers.

    Attributes:
        method: ``"adabin"``, ``"sign"`` or ``"xnor"``.
        weight_estimator: backward estimator of the AdaBin weight sign, ``"ste"`` or ``"ede"``.
        act_form: ``"paper"`` (``alpha_a*sgn(u)+beta_a``) or ``"code"``
            (``alpha_a*(sgn(u)+beta_a)``, the released code's form).
        binarize_weights: runtime switch; ``False`` uses the latent float weight (two-step
            training, step 1).
        binarize_activations: runtime switch; ``False`` feeds the float input.
        ede_t, ede_k: temperature and scale of the ``ede`` estimator (see
            :func:`autobin.quantizers.ede_schedule`); defaults ``t=0.1, k=10``.
        act_alpha, act_beta: learnable scalars of the AdaBin activation set (method adabin only).
    """

    weight: nn.Parameter
    act_alpha: nn.Parameter | None
    act_beta: nn.Parameter | None

    def _init_binary(
        self,
        *,
        method: str,
        weight_estimator: str,
        act_form: str,
        act_alpha_init: float,
        act_beta_init: float,
        binarize_weights: bool,
        binarize_activations: bool,
        eps: float,
    ) -> None:
        self.method = check_method(method)
        self.weight_estimator = check_weight_estimator(weight_estimator)
        self.act_form = check_act_form(act_form)
        if not act_alpha_init > 0:
            raise ValueError(
                f"act_alpha_init must be > 0 (it is the half-distance of the activation binary "
                f"set), got {act_alpha_init}; use a positive value such as 1.0"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0 so alpha_w stays positive, got {eps}")
        self.binarize_weights = bool(binarize_weights)
        self.binarize_activations = bool(binarize_activations)
        self.eps = float(eps)
        self.ede_t, self.ede_k = 0.1, 10.0
        self.frozen = False
        if self.method == "adabin":
            kw = {"device": self.weight.device, "dtype": torch.float32}
            self.act_alpha = nn.Parameter(torch.tensor(float(act_alpha_init), **kw))
            self.act_beta = nn.Parameter(torch.tensor(float(act_beta_init), **kw))
        else:
            self.register_parameter("act_alpha", None)
            self.register_parameter("act_beta", None)

    # ----------------------------------------------------------------- training-time math
    def set_ede(self, t: float, k: float) -> None:
        """Set the ``ede`` estimator's temperature ``t`` and scale ``k``."""
        self.ede_t, self.ede_k = float(t), float(k)

    def binary_weight(self) -> torch.Tensor:
        """The effective (fake-quantized) weight used in the forward pass, differentiable."""
        if self.frozen:
            return self.weight
        if self.method == "adabin":
            return adabin_weight(
                self.weight, self.weight_estimator, t=self.ede_t, k=self.ede_k, eps=self.eps
            )
        if self.method == "sign":
            return sign_weight(self.weight)
        return xnor_weight(self.weight)

    def binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize the layer input (the fake-quantized activation), differentiable."""
        if self.method == "adabin":
            return adabin_activation(x, self.act_alpha, self.act_beta, self.act_form)
        return sign_activation(x)

    def _effective_weight(self) -> torch.Tensor:
        if self.binarize_weights or self.frozen:
            return self.binary_weight()
        return self.weight

    def _maybe_binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.binarize_input(x) if self.binarize_activations else x

    # ----------------------------------------------------------------- deployment view
    @torch.no_grad()
    def weight_binary_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-output-channel ``(alpha_w, beta_w)``, each of shape ``(out_features,)``.

        Channel ``o`` takes the values ``{beta_w[o] - alpha_w[o], beta_w[o] + alpha_w[o]}``.
        """
        if self.frozen:
            return self.frozen_alpha_w.clone(), self.frozen_beta_w.clone()
        w = self.weight
        if self.method == "adabin":
            alpha, beta = adabin_weight_set(w, self.eps)
        elif self.method == "xnor":
            alpha, beta = xnor_weight_set(w)
        else:
            alpha = torch.ones((w.shape[0],), dtype=w.dtype, device=w.device)
            beta = torch.zeros_like(alpha)
        return alpha.reshape(-1), beta.reshape(-1)

    @torch.no_grad()
    def weight_signs(self) -> torch.Tensor:
        """Boolean tensor shaped like ``weight``: ``True`` where the binary weight is ``+1``.

        Together with :meth:`weight_binary_set` this reproduces :meth:`binary_weight` exactly:
        ``Wb = alpha_w * (2*signs - 1) + beta_w``.
        """
        if self.frozen:
            beta = self.frozen_beta_w.reshape((-1,) + (1,) * (self.weight.dim() - 1))
            return self.weight > beta
        if self.method == "adabin":
            return adabin_weight_signs(self.weight, self.eps)
        return self.weight >= 0

    @torch.no_grad()
    def activation_binary_set(self) -> tuple[float, float]:
        """``(alpha_a, c_a)``: the input takes the values ``{c_a - alpha_a, c_a + alpha_a}``.

        ``c_a = beta_a`` in the paper form and ``alpha_a * beta_a`` in the code form; the sign
        baselines use ``(1, 0)``.
        """
        if self.method != "adabin":
            return 1.0, 0.0
        alpha = effective_alpha(self.act_alpha)
        center = activation_center(alpha, self.act_beta.detach(), self.act_form)
        return float(alpha), float(center)

    @torch.no_grad()
    def input_signs(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor shaped like ``x``: ``True`` where the binarized input is ``+1``."""
        if self.method != "adabin":
            return sgn(x) > 0
        return x >= self.act_beta.detach().to(x.dtype)

    @torch.no_grad()
    def freeze(self) -> None:
        """Replace the latent weight by the effective binary weight, for inference.

        The forward pass then uses the stored binary weight directly (bit-identical to what the
        latent weight produced); the latent weight is gone, so freeze only for deployment.
        """
        if self.frozen:
            return
        alpha, beta = self.weight_binary_set()
        self.set_binary_weight(self.weight_signs(), alpha, beta)

    @torch.no_grad()
    def set_binary_weight(
        self, signs: torch.Tensor, alpha_w: torch.Tensor, beta_w: torch.Tensor
    ) -> None:
        """Load a binary weight from signs and its per-channel set; the layer becomes frozen.

        Args:
            signs: boolean tensor shaped like ``weight`` (``True`` for ``+1``).
            alpha_w: ``(out,)`` half-distances, positive.
            beta_w: ``(out,)`` centers.
        """
        if tuple(signs.shape) != tuple(self.weight.shape):
            raise ValueError(
                f"signs have shape {tuple(signs.shape)} but the weight has shape "
                f"{tuple(self.weight.shape)}"
            )
        out = self.weight.shape[0]
        if alpha_w.numel() != out or beta_w.numel() != out:
            raise ValueError(
                f"alpha_w and beta_w need {out} entries (one per output channel), got "
                f"{alpha_w.numel()} and {beta_w.numel()}"
            )
        dev, dt = self.weight.device, self.weight.dtype
        alpha = alpha_w.detach().to(dev, dt).reshape(-1)
        beta = beta_w.detach().to(dev, dt).reshape(-1)
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        s = torch.where(signs.to(dev), 1.0, -1.0).to(dt)
        self.weight.data = alpha.reshape(shape) * s + beta.reshape(shape)
        self.weight.requires_grad_(False)
        self.register_buffer("frozen_alpha_w", alpha, persistent=False)
        self.register_buffer("frozen_beta_w", beta, persistent=False)
        self.frozen = True

    def _binary_repr(self) -> str:
        if self.method == "adabin":
            w = f"weights=adabin({self.weight_estimator})"
            a = f"activations=adabin({self.act_form})"
        else:
            w = f"weights={self.method}"
            a = "activations=sign"
        if not self.binarize_weights and not self.frozen:
            w = "weights=float"
        if not self.binarize_activations:
            a = "activations=float"
        return f"{w}, {a}" + (", frozen" if self.frozen else "")


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """2-D convolution with binarized weights and binarized input.

    Forward: ``y = conv2d(B_a(x), B_w(W)) + bias`` where ``B_w``/``B_a`` are the method's weight
    and activation binarizers (see the module docstring); zero padding is applied to the
    binarized input, as in training of the reference implementation. ``padding_mode`` other
    than ``zeros`` pads with binary values.
    """

    method_default: str = "adabin"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        method: str | None = None,
        weight_estimator: str = "ste",
        act_form: str = "paper",
        act_alpha_init: float = 1.0,
        act_beta_init: float = 0.0,
        binarize_weights: bool = True,
        binarize_activations: bool = True,
        eps: float = 1e-5,
        dynamic_same_padding: bool = False,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias, padding_mode, device, dtype,
        )  # fmt: skip
        self._init_binary(
            method=method or self.method_default,
            weight_estimator=weight_estimator,
            act_form=act_form,
            act_alpha_init=act_alpha_init,
            act_beta_init=act_beta_init,
            binarize_weights=binarize_weights,
            binarize_activations=binarize_activations,
            eps=eps,
        )
        self.dynamic_same_padding = bool(dynamic_same_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._maybe_binarize_input(x)
        if self.dynamic_same_padding:
            x = _pad_same(x, self.kernel_size, self.stride, self.dilation)
        return self._conv_forward(x, self._effective_weight(), self.bias)

    @classmethod
    def from_float(cls, module: nn.Conv2d, **options: Any) -> BinaryConv2d:
        """Build a binary conv with ``module``'s configuration and its weights as latent weights.

        Args:
            module: a float ``nn.Conv2d`` (not already binary).
            **options: binarizer options (``weight_estimator``, ``act_form``, ...); ``method``
                only on :class:`BinaryConv2d` itself.
        """
        _check_float_source(module, nn.Conv2d, cls)
        layer = cls(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, module.dilation, module.groups, module.bias is not None,
            module.padding_mode, device=module.weight.device, dtype=module.weight.dtype,
            **options,
        )  # fmt: skip
        _copy_params(module, layer)
        layer.train(module.training)
        return layer

    def extra_repr(self) -> str:
        same = ", padding=dynamic-same" if self.dynamic_same_padding else ""
        return f"{nn.Conv2d.extra_repr(self)}{same}, {self._binary_repr()}"


class BinaryLinear(BinaryLayer, nn.Linear):
    """Linear layer with binarized weights and binarized input.

    Forward: ``y = B_a(x) @ B_w(W)^T + bias``; each output row of ``W`` has its own binary set.
    """

    method_default: str = "adabin"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        method: str | None = None,
        weight_estimator: str = "ste",
        act_form: str = "paper",
        act_alpha_init: float = 1.0,
        act_beta_init: float = 0.0,
        binarize_weights: bool = True,
        binarize_activations: bool = True,
        eps: float = 1e-5,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._init_binary(
            method=method or self.method_default,
            weight_estimator=weight_estimator,
            act_form=act_form,
            act_alpha_init=act_alpha_init,
            act_beta_init=act_beta_init,
            binarize_weights=binarize_weights,
            binarize_activations=binarize_activations,
            eps=eps,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._maybe_binarize_input(x), self._effective_weight(), self.bias)

    @classmethod
    def from_float(cls, module: nn.Linear, **options: Any) -> BinaryLinear:
        """Build a binary linear with ``module``'s shape and its weights as latent weights."""
        _check_float_source(module, nn.Linear, cls)
        layer = cls(
            module.in_features,
            module.out_features,
            module.bias is not None,
            device=module.weight.device,
            dtype=module.weight.dtype,
            **options,
        )
        _copy_params(module, layer)
        layer.train(module.training)
        return layer

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._binary_repr()}"


def _pad_same(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> torch.Tensor:
    """Zero-pad ``x`` so a conv gives ``ceil(size / stride)`` outputs (TensorFlow "SAME").

    Applied to the binarized input, so padded taps are 0 exactly as with static padding.
    """
    pads: list[int] = []
    for size, k, s, d in zip(x.shape[-1:-3:-1], kernel[::-1], stride[::-1], dilation[::-1]):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _check_float_source(module: nn.Module, base: type, cls: type) -> None:
    if isinstance(module, BinaryLayer):
        raise ValueError(
            f"{type(module).__name__} is already binary; {cls.__name__}.from_float expects a "
            f"float {base.__name__}"
        )
    if not isinstance(module, base):
        raise TypeError(
            f"{cls.__name__}.from_float expects an nn.{base.__name__}, got {type(module).__name__}"
        )


@torch.no_grad()
def _copy_params(src: nn.Module, dst: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


def _fixed_method(base: type, method: str, name: str, doc: str) -> type:
    """Make a public subclass of ``base`` whose method is fixed to ``method``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("method", method) != method:
            raise ValueError(
                f"{name} always uses method {method!r}; use {base.__name__}(method=...) to choose"
            )
        kwargs["method"] = method
        base.__init__(self, *args, **kwargs)

    return type(name, (base,), {"__init__": __init__, "method_default": method, "__doc__": doc})


AdaBinConv2d = _fixed_method(
    BinaryConv2d,
    "adabin",
    "AdaBinConv2d",
    """AdaBin binary convolution (Tu et al., ECCV 2022).

    Same constructor as ``nn.Conv2d`` plus keyword-only options ``weight_estimator`` (``ste`` |
    ``ede``), ``act_form`` (``paper`` | ``code``), ``act_alpha_init`` (> 0, default 1),
    ``act_beta_init`` (default 0), ``binarize_weights``, ``binarize_activations``, ``eps``.

    Forward, per output channel ``o`` over ``n = (C_in/groups)*kh*kw`` weights::

        Wb = alpha_w * sgn((W - beta_w)/alpha_w) + beta_w,  beta_w = mean W[o],
             alpha_w = sqrt(var_pop W[o] + eps)
        ab = alpha_a * sgn((x - beta_a)/alpha_a) + beta_a      (learned scalars alpha_a, beta_a)
        y  = conv2d(ab, Wb) + bias

    Backward: weights through ``ste`` (identity) or ``ede`` (``k t (1 - tanh(t u)^2)``) and
    through ``alpha_w``/``beta_w``; activations through Bi-Real's ``max(0, 2 - 2|u|)``.
    """,
)
AdaBinLinear = _fixed_method(
    BinaryLinear,
    "adabin",
    "AdaBinLinear",
    """AdaBin binary linear layer (Tu et al., ECCV 2022).

    Same constructor as ``nn.Linear`` plus the options of :class:`AdaBinConv2d`; each output
    row is one channel of the weight binarizer. Forward ``y = ab @ Wb^T + bias`` with ``Wb`` and
    ``ab`` as in :class:`AdaBinConv2d`; same backward estimators.
    """,
)
SignConv2d = _fixed_method(
    BinaryConv2d,
    "sign",
    "SignConv2d",
    """BNN baseline conv (Hubara et al., NeurIPS 2016): ``conv2d(sgn(x), sgn(W))``.

    Backward: clipped straight-through ``1{|.| <= 1}`` for both weights and activations.
    """,
)
SignLinear = _fixed_method(
    BinaryLinear,
    "sign",
    "SignLinear",
    """BNN baseline linear: ``sgn(x) @ sgn(W)^T``, clipped straight-through backward.""",
)
XnorConv2d = _fixed_method(
    BinaryConv2d,
    "xnor",
    "XnorConv2d",
    """XNOR-Net baseline conv (Rastegari et al., ECCV 2016).

    Forward ``conv2d(sgn(x), mean|W[o]| * sgn(W))``; clipped straight-through backward, with the
    weight gradient also flowing through the per-channel scale.
    """,
)
XnorLinear = _fixed_method(
    BinaryLinear,
    "xnor",
    "XnorLinear",
    """XNOR-Net baseline linear: ``sgn(x) @ (mean|W[o]| * sgn(W))^T``.""",
)

for _cls in (AdaBinConv2d, AdaBinLinear, SignConv2d, SignLinear, XnorConv2d, XnorLinear):
    _cls.__module__ = __name__
