"""Layer 1 of autobin: pure binarization math (sign estimators, AdaBin binarizers, schedules).

Nothing here holds parameters; the layers in :mod:`autobin.nn` own them and call these functions.
"""

from .activation import (
    ACT_FORMS,
    ADABIN_INPUTS,
    MIN_ALPHA,
    SIGN_INPUT,
    AdaBinInput,
    SignInput,
    activation_center,
    adabin_activation,
    effective_alpha,
    sign_activation,
)
from .packing import BIT_ORDER, pack_signs, packed_nbytes, unpack_signs
from .schedule import ede_schedule
from .sign import (
    WEIGHT_ESTIMATORS,
    bireal_derivative,
    ede_derivative,
    sgn,
    sign_bireal,
    sign_clipped_ste,
    sign_ede,
    sign_ste,
)
from .weight import (
    adabin_weight,
    adabin_weight_set,
    adabin_weight_signs,
    sign_weight,
    xnor_weight,
    xnor_weight_set,
)

__all__ = [
    "ACT_FORMS",
    "ADABIN_INPUTS",
    "BIT_ORDER",
    "MIN_ALPHA",
    "SIGN_INPUT",
    "WEIGHT_ESTIMATORS",
    "AdaBinInput",
    "SignInput",
    "activation_center",
    "adabin_activation",
    "adabin_weight",
    "adabin_weight_set",
    "adabin_weight_signs",
    "bireal_derivative",
    "ede_derivative",
    "ede_schedule",
    "effective_alpha",
    "pack_signs",
    "packed_nbytes",
    "sgn",
    "sign_activation",
    "sign_bireal",
    "sign_clipped_ste",
    "sign_ede",
    "sign_ste",
    "sign_weight",
    "unpack_signs",
    "xnor_weight",
    "xnor_weight_set",
]
