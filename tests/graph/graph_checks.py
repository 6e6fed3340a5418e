"""Independent checks shared by the graph tests (imported as a sibling module)."""

from __future__ import annotations

import math

from torch import nn

from autobin.nn import BinaryLayer


def packed_bytes(model: nn.Module) -> int:
    """Packed size from the state dict: binary weights as signs + fp32 alpha_w, beta_w."""
    binary_weights = {
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, BinaryLayer)
    }
    total = 0
    for key, t in model.state_dict().items():
        if key in binary_weights:
            total += math.ceil(t.numel() / 8) + 8 * t.shape[0]
        else:
            total += t.numel() * t.element_size()
    return total
