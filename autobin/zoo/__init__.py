"""Layer 6 of autobin: the model zoo, real 1-bit packed checkpoints.

Public: :func:`publish`, :func:`publish_run`, :func:`load`, :func:`list_models`,
:func:`verify`, :func:`show`; the packed format (:func:`save_packed`, :func:`read_packed`,
:func:`load_packed_state`, :func:`packed_state`), the model card (:func:`render_card`) and the
errors (:class:`ZooError` and subclasses). See :mod:`autobin.zoo.reading` for the directory layout
and :mod:`autobin.zoo.format` for the tensor naming of ``model.safetensors``.
"""

from .card import render_card
from .config import read_config, validate_config
from .errors import (
    ModelNotFoundError,
    ZooError,
    ZooFormatError,
    ZooIntegrityError,
    ZooNameError,
)
from .format import (
    FLOAT_DTYPES,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    FloatDtype,
    binary_layers,
    load_packed_state,
    packed_state,
    read_packed,
    save_packed,
)
from .index import read_index
from .maintenance import clean_interrupted, rebuild_index
from .publishing import publish, publish_run
from .reading import list_models, load, load_file, show, verify
from .rebuild import Rebuild, default_rebuild, family_rebuild
from .single_file import save_file

__all__ = [
    "FLOAT_DTYPES",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "FloatDtype",
    "ModelNotFoundError",
    "Rebuild",
    "ZooError",
    "ZooFormatError",
    "ZooIntegrityError",
    "ZooNameError",
    "binary_layers",
    "clean_interrupted",
    "default_rebuild",
    "family_rebuild",
    "list_models",
    "load",
    "load_file",
    "load_packed_state",
    "packed_state",
    "publish",
    "publish_run",
    "read_config",
    "read_index",
    "read_packed",
    "rebuild_index",
    "render_card",
    "save_file",
    "save_packed",
    "show",
    "validate_config",
    "verify",
]
