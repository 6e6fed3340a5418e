"""Zoo round trips of real timm models through autobin.binarize (the default rebuild)."""

from __future__ import annotations

import pytest
import timm
import torch

from autobin import binarize
from autobin.zoo import binary_layers, load, publish, show


@torch.no_grad()
def _perturb(model):
    """Trained-looking BN statistics, activation sets and Maxout slopes (weights keep timm init)."""
    g = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if name.endswith("act_alpha"):
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        elif name.endswith(("act_beta", "gamma_neg")):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


CASES = [
    ("resnet18", "adabin", {"num_classes": 10}, (2, 3, 32, 32)),
    ("resnet18", "xnor", {"num_classes": 10, "in_chans": 1}, (2, 1, 32, 32)),
    pytest.param(
        "vit_tiny_patch16_224",
        "adabin-full",
        {"num_classes": 10, "img_size": 32, "patch_size": 8},
        (2, 3, 32, 32),
        marks=pytest.mark.slow,
    ),
]


def _binarized(arch, kwargs, shape=None, recipe="adabin", seed=0):
    torch.manual_seed(seed)
    example = (torch.randn(shape),) if shape else None
    model = timm.create_model(arch, pretrained=False, **kwargs)
    return binarize(model, recipe, example_inputs=example)


@pytest.mark.parametrize(
    ("arch", "recipe", "kwargs", "shape"),
    CASES,
    ids=["resnet18-adabin", "resnet18-xnor", "vit-adabin-full"],
)
def test_timm_publish_load_identical(zoo, arch, recipe, kwargs, shape):
    model = _perturb(_binarized(arch, kwargs, shape, recipe)).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    name = f"{arch}-{recipe}"
    publish(
        model,
        name,
        zoo_dir=zoo,
        arch=arch,
        arch_kwargs=kwargs,
        metrics={"top1": 1.0},
        input_size=list(shape[1:]),
    )
    config = show(name, zoo_dir=zoo)
    assert config["architecture"] == {"library": "timm", "name": arch, "kwargs": kwargs}
    assert config["recipe"] is not None and len(config["recipe_sha256"]) == 64
    assert config["report"]["totals"]["bops"] > 0
    assert config["recipe"]["name"] == recipe
    loaded = load(name, zoo_dir=zoo)  # default rebuild: timm.create_model + autobin.binarize
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_timm_arch_taken_from_pretrained_cfg(zoo):
    model = _binarized("resnet18", {"num_classes": 10}).eval()
    publish(model, "r18", zoo_dir=zoo)
    arch = show("r18", zoo_dir=zoo)["architecture"]
    assert arch["name"] == "resnet18" and arch["kwargs"]["num_classes"] == 10


@pytest.mark.slow
def test_timm_keep_latent_and_float16(zoo):
    shape = (2, 3, 32, 32)
    model = _perturb(_binarized("resnet18", {"num_classes": 10}, shape)).eval()
    x = torch.randn(shape)
    kw = {"arch": "resnet18", "arch_kwargs": {"num_classes": 10}, "input_size": [3, 32, 32]}
    publish(model, "latent", zoo_dir=zoo, keep_latent=True, **kw)
    publish(model, "half", zoo_dir=zoo, float_dtype="float16", check_rebuild=False, **kw)
    trainable = load("latent", zoo_dir=zoo, keep_latent=True)
    assert not any(layer.frozen for layer in binary_layers(trainable).values())
    with torch.no_grad():
        assert torch.equal(trainable(x), model(x))
    half = show("half", zoo_dir=zoo)["weights"]["file_bytes"]
    assert half < show("latent", zoo_dir=zoo)["weights"]["file_bytes"] / 10


def test_timm_wrong_arch_kwargs_refused_before_writing(zoo):
    model = _binarized("resnet18", {"num_classes": 10, "in_chans": 1}, (2, 1, 32, 32))
    with pytest.raises(ValueError, match="arch_kwargs"):
        publish(model, "gray", zoo_dir=zoo, arch="resnet18", arch_kwargs={"num_classes": 10})
    assert not (zoo / "gray").exists()
    publish(model, "gray", zoo_dir=zoo, arch_kwargs={"num_classes": 10, "in_chans": 1})
    assert show("gray", zoo_dir=zoo)["input_size"] == [1, 32, 32]  # the size it was binarized with
