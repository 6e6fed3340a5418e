"""Errors of the MMDetection integration (each message names the file or value and the fix)."""

from __future__ import annotations

from ...errors import AutobinError


class MMDetIntegrationError(AutobinError, ValueError):
    """Base class: an mmdet config, checkpoint or dataset that autobin cannot use as given."""


class DetectorConfigError(MMDetIntegrationError):
    """A config without a usable detector (no ``model``, or a model that is not a detector)."""


class TeacherCheckpointError(MMDetIntegrationError):
    """A teacher checkpoint that is missing, unreadable or does not fit the detector."""


class RecipeMatchError(MMDetIntegrationError):
    """A recipe that binarizes no layer of the detector."""
