"""The CIFAR architectures registered in timm: shapes, parameter counts, pretrained_cfg, and
binarization with the recipes (parametrized over the registry, as timm's own tests are)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

import autobin
import autobin.models
from autobin.models import CIFAR_MODELS, NoPretrainedWeightsError
from autobin.nn import AdaBinConv2d, Maxout

NAMES = sorted(CIFAR_MODELS)


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k


def _resnet_params(blocks, widths, option_b: bool) -> int:
    """Parameters of the released CIFAR ResNet, counted from its description."""
    total = _conv(3, widths[0]) + 2 * widths[0]  # stem conv + BN
    cin = widths[0]
    for count, cout in zip(blocks, widths):
        for j in range(count):
            total += _conv(cin, cout) + _conv(cout, cout) + 4 * cout  # two convs, two BNs
            if option_b and j == 0 and cin != cout:
                total += _conv(cin, cout, 1) + 2 * cout  # 1x1 shortcut conv + BN
            cin = cout
    return total + 2 * cin + cin * 10 + 10  # BatchNorm1d + linear


EXPECTED = {  # float parameters; released code's / IR-Net's definitions
    "resnet18_cifar": _resnet_params((2, 2, 2, 2), (64, 128, 256, 512), option_b=True),
    "resnet20_cifar": _resnet_params((3, 3, 3), (16, 32, 64), option_b=False),
    "vgg_small_cifar": sum(_conv(a, b) + 2 * b for a, b in
                           [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)])
    + 512 * 4 * 4 * 10 + 10,
}  # fmt: skip


def test_the_paper_sizes():
    assert EXPECTED["resnet20_cifar"] == 269_850  # "0.27M"
    assert EXPECTED["resnet18_cifar"] == 11_174_986
    assert EXPECTED["vgg_small_cifar"] == 4_660_106  # "4.66M" (LQ-Nets, IR-Net)


@pytest.mark.parametrize("name", NAMES)
def test_registered_model_shapes_params_and_cfg(name):
    assert timm.is_model(name) and name in timm.list_models("*_cifar")
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["num_classes"] == 10
    assert (cfg["mean"], cfg["std"]) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    assert isinstance(model.get_submodule(cfg["first_conv"]), torch.nn.Conv2d)
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape[-2:] == cfg["pool_size"]
    assert model(x).shape == (2, 10)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", NAMES)
def test_num_classes_in_chans_and_reset_classifier(name):
    model = timm.create_model(name, num_classes=100, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    model.reset_classifier(0)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, model.num_features)


@pytest.mark.parametrize("name", NAMES)
def test_binarized_with_adabin_reference_trains(name):
    torch.manual_seed(0)
    bnn = autobin.binarize(timm.create_model(name), recipe="adabin-reference")
    report = autobin.info(bnn).report.to_dict()["totals"]
    convs = [m for m in bnn.modules() if isinstance(m, torch.nn.Conv2d)]
    binary = [m for m in convs if isinstance(m, AdaBinConv2d)]
    # every 3x3 conv but the stem is binary; the stem, 1x1 shortcuts and classifier stay float
    assert len(binary) == sum(m.kernel_size == (3, 3) for m in convs) - 1
    assert report["binarized_layers"] == len(binary) and report["shortcuts"] == 0
    assert all(m.act_form == "code" for m in binary)
    assert not [m for m in bnn.modules() if isinstance(m, torch.nn.ReLU)]  # the stem's too
    assert report["maxout"] == len([m for m in bnn.modules() if isinstance(m, Maxout)])
    loss = torch.nn.functional.cross_entropy(bnn(torch.randn(4, 3, 32, 32)), torch.arange(4))
    loss.backward()
    assert all(m.weight.grad is not None and m.act_alpha.grad is not None for m in binary)


def test_pretrained_weights_are_refused_in_one_line():
    with pytest.raises(NoPretrainedWeightsError, match=r"ships no pretrained weights.*resnet20"):
        timm.create_model("resnet20_cifar", pretrained=True)


def test_timm_knows_the_cifar_models_once_autobin_is_imported_without_importing_timm():
    after = (  # autobin first: timm is not imported by it, and registers them when it is
        "import autobin, sys; print('timm' in sys.modules); import timm; "
        "print(timm.is_model('vgg_small_cifar'), timm.is_model('resnet20_cifar'))"
    )
    before = "import timm, autobin; print(timm.is_model('resnet18_cifar'))"  # timm first
    plain = "import timm; print(timm.is_model('resnet20_cifar'))"  # without autobin: unknown
    outs = [
        subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True,
                       timeout=120).stdout.split()
        for c in (after, before, plain)
    ]  # fmt: skip
    assert outs == [["False", "True", "True"], ["True"], ["False"]]
    assert autobin.models is sys.modules["autobin.models"]
