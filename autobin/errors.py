"""The one base class of the errors autobin raises on purpose.

Every expected failure (a bad argument, an invalid recipe, a damaged zoo entry, a model autobin
cannot handle) raises a subclass of :class:`AutobinError`, which also subclasses the built-in
type callers already catch (``ValueError``, ``TypeError``, ``LookupError``). So
``except autobin.AutobinError`` catches "autobin said no", and the command line turns each one
into a single line naming the problem and the fix.
"""

from __future__ import annotations


class AutobinError(Exception):
    """Base class of every error autobin raises on purpose; the message says what and how."""


class BinarizeError(AutobinError, ValueError):
    """The model cannot be binarized as asked (already binarized, example input fails, ...)."""


class ModelTypeError(AutobinError, TypeError):
    """An argument that must be a module (or a recipe, a path) is of another type."""


__all__ = ["AutobinError", "BinarizeError", "ModelTypeError"]
