"""Compatibility with the AdaBin authors' released code (huawei-noah Efficient-Computing).

:func:`load_reference_checkpoint` loads a checkpoint saved by the released training scripts
into a model binarized with the ``adabin-reference`` recipe, which reproduces the released
layers (code activation form, EDE, no added Bi-Real shortcuts, Maxout for every ReLU/PReLU,
the stem's included).
"""

from .reference import ReferenceCheckpointError, load_reference_checkpoint

__all__ = ["ReferenceCheckpointError", "load_reference_checkpoint"]
