"""Errors the training layer raises on purpose; each names what was wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

from ..errors import AutobinError, AutobinWarning


class TrainError(AutobinError):
    """Base of the training layer's own errors (bad data, damaged files, failed ranks)."""


class NonFiniteLossError(TrainError, RuntimeError):
    """The training loss became NaN or infinite; the run stopped before applying the update.

    Attributes:
        epoch: 1-based epoch in which it happened.
        step: 1-based global optimizer step that would have been taken.
        value: the loss value.
        checkpoint: the last good checkpoint kept on disk, or ``None`` if none was written yet.
    """

    def __init__(self, epoch: int, step: int, value: float, checkpoint: Path | None) -> None:
        self.epoch, self.step, self.value, self.checkpoint = epoch, step, value, checkpoint
        if checkpoint is not None:
            kept = (
                f"The last good checkpoint {str(checkpoint)!r} is kept; lower the learning "
                "rate or check the data, then resume from it with resume=True."
            )
        else:
            kept = "No checkpoint was written yet (the failure is in the first epoch)."
        super().__init__(
            f"non-finite training loss ({value}) at epoch {epoch}, step {step}; training "
            f"stopped before this update. {kept}"
        )

    def __reduce__(self):  # picklable (DataLoader workers, all_gather_object)
        return (type(self), (self.epoch, self.step, self.value, self.checkpoint))


class CheckpointError(TrainError, ValueError):
    """A checkpoint file is damaged (truncated, empty, altered) or is not an autobin checkpoint."""


class RunDirectoryError(TrainError, ValueError):
    """The output directory already holds a run and neither resume nor overwrite was asked for."""


class DataFormatError(TrainError, ValueError):
    """A dataset item or batch does not have the form the loop needs."""


class RankFailedError(TrainError, RuntimeError):
    """Another process of a distributed run failed; this one stopped instead of waiting."""


class ModelSetupError(TrainError, ValueError):
    """The model or teacher cannot be trained as given (half-precision weights, wrong inputs)."""


class DistributedSetupError(TrainError, RuntimeError):
    """The processes of a distributed run are not set up alike (environment, data, devices)."""


class TrainWarning(AutobinWarning):
    """A run goes on, but not as asked or not as expected (resume mismatches, NaN metrics)."""


__all__ = [
    "CheckpointError",
    "DataFormatError",
    "DistributedSetupError",
    "ModelSetupError",
    "NonFiniteLossError",
    "RankFailedError",
    "RunDirectoryError",
    "TrainError",
    "TrainWarning",
]
