"""Fast binary inference on the CPU: packed XNOR/popcount layers.

::

    fast = autobin.deploy(bnn)            # inference-only copy with packed binary layers
    y = fast(x)                           # equals bnn.eval()(x) up to float rounding
    fast = autobin.zoo.load("resnet18.adabin_mnist5k", deploy=True)

Each binary conv/linear becomes a :class:`PackedConv2d` / :class:`PackedLinear` (weights 1 bit
each, a following BatchNorm folded in); the compiled kernel path is picked at run time from
the CPU's features (``avx512`` VPOPCNTDQ, ``avx2``, ``portable``; ``reference`` is pure torch),
see :mod:`autobin.deploy.build`. Exactness and the float error bound: :mod:`.reference`.

The package itself is callable: ``autobin.deploy(model)`` is :func:`deploy` (importing a
subpackage binds its name on the parent, so the name must work as both).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .build import (
    KERNEL_PATHS,
    KernelFallbackWarning,
    KernelUnavailableError,
    active_kernel,
    available_kernels,
    use_kernel,
)
from .errors import DeployError, DeployInputError
from .layers import PackedConv2d, PackedLinear
from .model import DeployedModel, DeploySummary, NoBinaryLayersWarning, deploy

__all__ = [
    "KERNEL_PATHS",
    "DeployError",
    "DeployInputError",
    "DeploySummary",
    "DeployedModel",
    "KernelFallbackWarning",
    "KernelUnavailableError",
    "NoBinaryLayersWarning",
    "PackedConv2d",
    "PackedLinear",
    "active_kernel",
    "available_kernels",
    "deploy",
    "use_kernel",
]


class _CallablePackage(types.ModuleType):
    """``autobin.deploy(model, ...)`` calls :func:`deploy`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return deploy(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
