"""Fixtures of the search tests: a small trained residual net and mnist5k calibration images."""

from __future__ import annotations

import pytest
import torch
from search_nets import small_net

from autobin.data import load_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models gain nothing from intra-op threads; on a busy 2-core runner they thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_train():
    return load_dataset("mnist5k", "train")


@pytest.fixture(scope="session")
def trained_net(tmp_path_factory, mnist_train):
    """The small net trained for one epoch on 512 mnist5k digits (a few seconds)."""
    from torch.utils.data import Subset

    from autobin.train import train_float

    model = small_net(seed=0)
    train_float(
        model,
        Subset(mnist_train, range(512)),
        epochs=1,
        out_dir=tmp_path_factory.mktemp("teacher"),
        config={"lr": 3e-3, "batch_size": 64, "progress": False, "plots": False, "seed": 0},
    )
    return model.eval()
