"""Fixtures for the MMDetection tests: real mmdet, the configs shipped inside the installed
mmdet package (``mmdet::...`` = ``mmdet/.mim/configs``), and a tiny generated mnist-det set.

These tests need the ``[mmdet]`` extra, which ``make test`` installs; they are never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdet_helpers import SSD_VOC, build_float


@pytest.fixture(scope="session")
def ssd_float():
    return build_float(SSD_VOC, bbox_head={"num_classes": 10})


@pytest.fixture(scope="session")
def mnist_det_root(tmp_path_factory) -> Path:
    from autobin.data.mnist_det import write_mnist_det

    return write_mnist_det(tmp_path_factory.mktemp("data") / "mnist-det", trainval=2, test=1)
