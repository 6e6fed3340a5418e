"""Small helpers on module trees that every layer of autobin uses (defined once, here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule of ``root`` at qualified ``name`` (``"layer1.0.conv1"``)."""
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode; restore each one's own mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


__all__ = ["eval_mode", "set_module"]
