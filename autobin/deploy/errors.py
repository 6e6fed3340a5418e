"""Errors of :mod:`autobin.deploy`."""

from __future__ import annotations

from ..errors import AutobinError


class DeployError(AutobinError, RuntimeError):
    """A model or input cannot be deployed or run with the packed kernels (message says why)."""


class DeployInputError(DeployError, ValueError):
    """A deployed model was called with input it cannot run (shape, dtype, device, NaN)."""


__all__ = ["DeployError", "DeployInputError"]
