"""Layer 5 of autobin: distillation losses, schedules and the training loop.

>>> import autobin
>>> from autobin.train import finetune
>>> student = autobin.binarize(float_model)                 # doctest: +SKIP
>>> result = finetune(student, train_data="mnist5k", epochs=4, out_dir="runs/bnn")  # +SKIP

``finetune`` distils a binary student from its float teacher; ``train_float`` trains a float
model with cross-entropy through the same loop. Both checkpoint atomically every epoch, resume
exactly, and stop with :class:`NonFiniteLossError` on a NaN/inf loss. This package never imports
the graph pass; it drives binary layers through their public toggles only.
"""

from .api import finetune, train_float
from .callbacks import Callback, LoopState
from .checkpoint import load_checkpoint
from .config import TrainConfig, TrainConfigError, list_train_configs, load_train_config
from .distributed import Ranks, distributed_session
from .errors import (
    CheckpointError,
    DataFormatError,
    DistributedSetupError,
    ModelSetupError,
    NonFiniteLossError,
    RankFailedError,
    RunDirectoryError,
    TrainError,
    TrainWarning,
)
from .evaluation import evaluate
from .losses import (
    DistillationLoss,
    FeatureTaps,
    LossTerms,
    distribution_loss,
    match_module_names,
    normalized_mse,
)
from .outputs import FinetuneResult
from .schedules import (
    apply_epoch_schedule,
    build_optimizer,
    build_scheduler,
    lr_factor,
    split_weight_decay,
)

__all__ = [
    "Callback",
    "CheckpointError",
    "DataFormatError",
    "DistillationLoss",
    "DistributedSetupError",
    "FeatureTaps",
    "FinetuneResult",
    "LoopState",
    "LossTerms",
    "ModelSetupError",
    "NonFiniteLossError",
    "RankFailedError",
    "Ranks",
    "RunDirectoryError",
    "TrainConfig",
    "TrainConfigError",
    "TrainError",
    "TrainWarning",
    "apply_epoch_schedule",
    "build_optimizer",
    "build_scheduler",
    "distributed_session",
    "distribution_loss",
    "evaluate",
    "finetune",
    "list_train_configs",
    "load_checkpoint",
    "load_train_config",
    "lr_factor",
    "match_module_names",
    "normalized_mse",
    "split_weight_decay",
    "train_float",
]
