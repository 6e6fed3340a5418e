"""Calibration without training: activation sets and BatchNorm statistics from the images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autobin.nn import AdaBinConv2d
from autobin.search import SearchError
from autobin.search.calibration import calibrate, calibration_images


def binary_net() -> nn.Sequential:
    torch.manual_seed(0)
    float_conv = nn.Conv2d(4, 6, 3, padding=1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        AdaBinConv2d.from_float(float_conv),
        nn.BatchNorm2d(6),
        nn.Dropout(0.5),
    )


def test_activation_set_and_batchnorm_statistics_are_fitted_to_the_images():
    net = binary_net()
    images = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    calibrate(net, images, batch_size=6)
    assert not net.training and all(not m.training for m in net.modules())
    with torch.no_grad():
        # the first BatchNorm sees the first conv's output of all 12 images (two batches)
        h = net[0](images)
        assert torch.allclose(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-6)
        per_batch = (h[:6].var((0, 2, 3)) + h[6:].var((0, 2, 3))) / 2  # cumulative average
        assert torch.allclose(net[1].running_var, per_batch, rtol=1e-5)
        # the binary conv's set fits its input on the first batch, normalized by batch stats
        first = net[2](nn.functional.batch_norm(net[0](images[:6]), None, None, training=True))
        center = first.mean()
        assert net[3].act_beta.item() == pytest.approx(center.item(), rel=1e-5)
        assert net[3].act_alpha.item() == pytest.approx((first - center).abs().mean().item(),
                                                        rel=1e-5)  # fmt: skip
    assert net[1].momentum == 0.1 and net[4].momentum == 0.1  # restored
    # dropout stayed off: calibrating twice gives the same statistics
    again = binary_net()
    calibrate(again, images, batch_size=6)
    assert torch.equal(again[4].running_mean, net[4].running_mean)


def test_calibration_images_are_chosen_by_the_seed():
    data = torch.arange(20.0).reshape(20, 1, 1, 1).expand(20, 1, 2, 2)
    a = calibration_images(data, 5, seed=0)
    assert torch.equal(a, calibration_images(data, 5, seed=0))
    assert not torch.equal(a, calibration_images(data, 5, seed=1))
    assert calibration_images(data, 100, seed=0).shape == (20, 1, 2, 2)
    pairs = [(data[i], i % 3) for i in range(20)]
    assert torch.equal(calibration_images(pairs, 5, seed=0), a)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.zeros(0, 1, 28, 28), "calibration set is empty"),
        (torch.zeros(1, 1, 28, 28), "needs at least 2"),
        ([("not an image", 0)], "not a \\(C, H, W\\) image"),
    ],
)
def test_bad_calibration_data_is_one_clear_error(data, message):
    with pytest.raises(SearchError, match=message) as info:
        calibration_images(data, 16, seed=0)
    assert "\n" not in str(info.value)


def test_a_dataloader_gives_its_first_images_in_its_order():
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    loader = DataLoader(TensorDataset(images, torch.arange(7)), batch_size=3)
    assert torch.equal(calibration_images(loader, 5, seed=0), images[:5])
    assert torch.equal(calibration_images(loader, 50, seed=0), images)
    with pytest.raises(SearchError, match="batches must be"):
        calibration_images(DataLoader(list(range(4)), batch_size=2), 4, seed=0)
