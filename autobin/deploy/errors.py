"""Errors of :mod:`autobin.deploy`."""

from __future__ import annotations

from ..errors import AutobinError


class DeployError(AutobinError, RuntimeError):
    """A model or input cannot be deployed or run with the packed kernels (message says why)."""


__all__ = ["DeployError"]
