"""Fixtures shared across test folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from cifar_batches import write_cifar


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A CIFAR-10 folder of 300 training and 100 test images in the release's format."""
    return write_cifar(tmp_path / "cifar", "cifar10")
