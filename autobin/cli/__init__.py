"""Layer 8 of autobin: the ``autobin`` command line (parsing only; calls the public API)."""

from .main import main

__all__ = ["main"]
