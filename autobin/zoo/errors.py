"""Errors raised by the zoo. All derive from :class:`ZooError`."""

from __future__ import annotations

from ..errors import AutobinError


class ZooError(AutobinError):
    """Base class of every zoo error."""


class ZooFormatError(ZooError, ValueError):
    """A file of an entry is malformed, of an unsupported version, or does not fit the model."""


class ZooIntegrityError(ZooError):
    """A file of an entry does not match its recorded sha256 (corrupt, truncated, tampered)."""


class ModelNotFoundError(ZooError, LookupError):
    """No entry of that name in the zoo index, and no such directory."""


class ZooNameError(ZooError, ValueError):
    """A zoo entry name that cannot be a directory name (see :func:`check_name`)."""


__all__ = ["ModelNotFoundError", "ZooError", "ZooFormatError", "ZooIntegrityError", "ZooNameError"]
