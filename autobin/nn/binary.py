"""The method-independent base of the binary convolution and linear layers.

:class:`BinaryConv2d` and :class:`BinaryLinear` subclass ``nn.Conv2d`` / ``nn.Linear`` and keep
their constructor signatures, adding keyword-only binarizer options. They are abstract: each
binarization method is one module of this package that subclasses them with a mixin owning the
method's binarizers, and registers the pair in :mod:`autobin.nn.registry`:

================  =============================  ========================================
method (module)   weights                        activations (layer input)
================  =============================  ========================================
``adabin``        ``alpha_w * sgn(u) + beta_w``  ``alpha_a * sgn(u) + beta_a`` (learned)
``sign`` (BNN)    ``sgn(W)``                     ``sgn(x)``, clipped STE
``xnor``          ``mean|W[o]| * sgn(W)``        ``sgn(x)``, clipped STE
================  =============================  ========================================

A method mixin provides ``method`` (its registry name), ``scalar_params`` (names of the learned
scalars it adds), ``_init_method``, ``_binarize_weight``, ``binarize_input``,
``_input_binarizer`` (the input binarizer object and its parameters, for the fused conv),
``_latent_weight_set``, ``_latent_weight_signs``, ``activation_binary_set``, ``input_signs`` and
``_describe``.

Deployment view: every layer exposes its binary sets and signs, so a packed XNOR/popcount kernel
can reproduce it exactly (ADABIN.md section 6)::

    Wb = alpha_w[o] * s_w + beta_w[o]         weight_binary_set(), weight_signs()
    ab = alpha_a * s_a + c_a                  activation_binary_set(), input_signs(x)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice
from ..quantizers import ACT_FORMS, WEIGHT_ESTIMATORS
from .fused import ConvGeometry, binary_input_conv2d


class BinaryLayer:
    """Mixin shared by the binary conv and linear layers.

    Attributes:
        method: the registry name of the layer's method (a class attribute).
        scalar_params: names of the learned scalars the method adds (a class attribute).
        weight_estimator: backward estimator of the AdaBin weight sign, ``"ste"`` or ``"ede"``.
        act_form: ``"paper"`` (``alpha_a*sgn(u)+beta_a``) or ``"code"``
            (``alpha_a*(sgn(u)+beta_a)``, the released code's form).
        binarize_weights: runtime switch; ``False`` uses the latent float weight (two-step
            training, step 1).
        binarize_activations: runtime switch; ``False`` feeds the float input.
        ede_t, ede_k: temperature and scale of the ``ede`` estimator (see
            :func:`autobin.quantizers.ede_schedule`); defaults ``t=0.1, k=10``.
    """

    method: ClassVar[str] = ""
    scalar_params: ClassVar[tuple[str, ...]] = ()
    weight: nn.Parameter

    def _init_binary(
        self,
        *,
        weight_estimator: str,
        act_form: str,
        act_alpha_init: float,
        act_beta_init: float,
        binarize_weights: bool,
        binarize_activations: bool,
        eps: float,
    ) -> None:
        if not getattr(type(self), "method", None):
            raise TypeError(
                f"{type(self).__name__} is the abstract base of the binary layers; build a "
                "method's class instead (autobin.nn.AdaBinConv2d, SignConv2d, XnorConv2d, ... or "
                "autobin.nn.method_spec(name).conv / .linear)"
            )
        self.weight_estimator = check_choice(
            weight_estimator, WEIGHT_ESTIMATORS, "weight estimator"
        )
        self.act_form = check_choice(act_form, ACT_FORMS, "activation form")
        if not eps > 0:
            raise ValueError(f"eps must be > 0 so alpha_w stays positive, got {eps}")
        self.binarize_weights = bool(binarize_weights)
        self.binarize_activations = bool(binarize_activations)
        self.eps = float(eps)
        self.ede_t, self.ede_k = 0.1, 10.0
        self.frozen = False
        self._init_method(act_alpha_init=act_alpha_init, act_beta_init=act_beta_init)

    # ----------------------------------------------------------------- training-time math
    def set_ede(self, t: float, k: float) -> None:
        """Set the ``ede`` estimator's temperature ``t`` and scale ``k``."""
        self.ede_t, self.ede_k = float(t), float(k)

    def binary_weight(self) -> torch.Tensor:
        """The effective (fake-quantized) weight used in the forward pass, differentiable."""
        return self.weight if self.frozen else self._binarize_weight()

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
        alpha, beta = self._latent_weight_set()
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
        return self._latent_weight_signs()

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
        w, a = self._describe()
        w, a = f"weights={w}", f"activations={a}"
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
        geometry = self._fused_geometry
        if self.binarize_activations and geometry is not None:
            binarizer, params = self._input_binarizer()
            weight = self._effective_weight()
            return binary_input_conv2d(x, weight, self.bias, binarizer, params, geometry)
        x = self._maybe_binarize_input(x)
        if self.dynamic_same_padding:
            x = _pad_same(x, self.kernel_size, self.stride, self.dilation)
        return self._conv_forward(x, self._effective_weight(), self.bias)

    @property
    def _fused_geometry(self) -> ConvGeometry | None:
        """Conv arguments for :func:`binary_input_conv2d`; ``None`` where it does not apply
        (non-zero padding modes, string or dynamic "same" padding: those pad the binary input)."""
        if self.padding_mode != "zeros" or self.dynamic_same_padding:
            return None
        padding = (0, 0) if self.padding == "valid" else self.padding
        if isinstance(padding, str):
            return None
        return ConvGeometry(tuple(self.stride), tuple(padding), tuple(self.dilation), self.groups)

    @classmethod
    def from_float(cls, module: nn.Conv2d, **options: Any) -> BinaryConv2d:
        """Build a binary conv with ``module``'s configuration and its weights as latent weights.

        Args:
            module: a float ``nn.Conv2d`` (not already binary).
            **options: binarizer options (``weight_estimator``, ``act_form``, ...).
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

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
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
