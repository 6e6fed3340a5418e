"""``autobin.deploy`` on real timm models and on the committed zoo entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from deploy_checks import assert_layerwise_within_bound

import autobin
from autobin.deploy import DeployedModel, PackedLinear, use_kernel
from autobin.nn import BinaryLayer
from autobin.quantizers.packing import unpack_signs

from .conftest import PATHS

ZOO = Path(__file__).resolve().parents[2] / "zoo"
ENTRY = "resnet18.adabin_mnist5k"


def _binarized(arch, recipe, size, **kwargs):
    """A binarized timm model whose norms and thresholds look trained (see below)."""
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kwargs)
    example = (torch.randn(2, kwargs.get("in_chans", 3), size, size),)
    bnn = autobin.binarize(model, recipe, example_inputs=example).eval()
    _trained_looking_(bnn)
    for m in bnn.modules():  # frozen: the fake-quantized forward then skips re-binarizing
        if isinstance(m, BinaryLayer):
            m.freeze()
    return bnn


@torch.no_grad()
def _trained_looking_(model: torch.nn.Module) -> None:
    """Random BatchNorm statistics/affines and activation thresholds, as after training.

    At initialisation (BN identity, every threshold beta_a = 0, zero-initialised last BNs) many
    binary conv outputs are mathematically exactly 0 = the next threshold, and which side the
    float rounding puts them on differs between any two summation orders; a trained network
    has no such ties.
    """
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            if m.weight is not None:
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
        if isinstance(m, BinaryLayer) and getattr(m, "act_beta", None) is not None:
            m.act_beta.fill_(float(torch.randn((), generator=gen)) * 0.05)


MODELS = [
    ("resnet18", "adabin", 32, {"num_classes": 10}),
    ("resnet18", "xnor", 32, {"num_classes": 10}),
    ("tf_efficientnet_b0", "adabin", 48, {"num_classes": 7}),  # dynamic "same" padding, SE
    ("vit_tiny_patch16_224", "adabin-full", 32, {"num_classes": 5, "img_size": 32}),  # linears
]


@pytest.mark.parametrize(("arch", "recipe", "size", "kwargs"), MODELS, ids=lambda v: str(v))
def test_deploy_timm_models_match_eval_fake_quantization(arch, recipe, size, kwargs):
    bnn = _binarized(arch, recipe, size, **kwargs)
    fast = autobin.deploy(bnn, float_parts="fp32")
    n_binary = sum(isinstance(m, BinaryLayer) for m in bnn.modules())
    assert len(fast.summary.packed) == n_binary > 0 and not fast.summary.kept
    assert not any(isinstance(m, BinaryLayer) for m in fast.modules())
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    assert_layerwise_within_bound(bnn, fast, x)
    with torch.no_grad():
        ref = bnn(x)
    y = fast(x)
    # end to end: float differences within the bound can flip a sign exactly at a threshold,
    # so the whole network is compared with a tolerance relative to the output scale
    assert y.shape == ref.shape
    assert float((y - ref).abs().max()) <= 1e-3 * float(ref.abs().max())
    assert (bnn.training, fast.training) == (False, False)
    # the defaults (int8/bf16 float parts where eligible, compiled chains) run the same model
    default = autobin.deploy(bnn)
    layered = autobin.deploy(bnn, compile_graph=False)
    assert torch.equal(default(x), layered(x)) and default(x).shape == ref.shape


def test_deploy_folds_every_resnet_batchnorm_and_shrinks_the_state():
    bnn = _binarized("resnet18", "adabin", 32, num_classes=10)
    fast = autobin.deploy(bnn)
    assert len(fast.summary.packed) == 16 and len(fast.summary.folded_norms) == 16
    # the stem's and the three downsample BatchNorms fold into their float convs
    assert sorted(fast.summary.float_folded_norms) == [
        "conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"
    ]  # fmt: skip
    assert len(fast.summary.maxouts) == 17
    # every Bi-Real shortcut but those of the three stride-2 convs is added inside the kernel
    assert len(fast.summary.residuals) == 13 and "layer2.0.conv1" not in fast.summary.residuals
    assert fast.summary.float_state_bytes > 15 * fast.summary.state_bytes
    assert autobin.info(fast.model).float_model is None  # the teacher is not deployed
    assert autobin.info(bnn).float_model is not None  # and the source is untouched
    assert any(isinstance(m, BinaryLayer) for m in bnn.modules())


@pytest.mark.slow
def test_deploy_resnet18_at_224_on_every_kernel_path():
    bnn = _binarized("resnet18", "adabin", 224)
    fast = autobin.deploy(bnn, float_parts="fp32")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = bnn(x)
    for path in PATHS:
        with use_kernel(path):
            y = fast(x)
        assert float((y - ref).abs().max()) <= 1e-3 * float(ref.abs().max()), path


def test_zoo_entry_deploys_from_its_packed_signs():
    fake = autobin.zoo.load(ENTRY, zoo_dir=ZOO)
    fast = autobin.zoo.load(ENTRY, zoo_dir=ZOO, deploy=True)
    assert isinstance(fast, DeployedModel)
    assert fast.autobin_zoo_config["name"] == ENTRY
    assert len(fast.summary.packed) == 16
    # the packed bits are the stored bits
    from safetensors.torch import load_file

    stored = load_file(ZOO / ENTRY / "model.safetensors")
    conv = fast.model.get_submodule("layer3.1.conv2")
    shape = (conv.out_channels, conv.in_channels, *conv.kernel_size)
    signs = unpack_signs(stored["layer3.1.conv2.weight.signs_packed"], shape)
    from autobin.deploy.packing import unpack_weight_signs

    assert torch.equal(unpack_weight_signs(conv.wbits, shape[0], shape[1], shape[2:]), signs)
    size = fast.autobin_zoo_config["input_size"]
    x = torch.randn(16, *size, generator=torch.Generator().manual_seed(0))
    assert_layerwise_within_bound(fake, fast, x)
    exact = autobin.deploy(fake, float_parts="fp32")  # float parts in float32: the bound holds
    with torch.no_grad():
        ref = fake(x)
    y = exact(x)
    assert float((y - ref).abs().max()) <= 1e-3 * float(ref.abs().max())
    assert torch.equal(y.argmax(1), ref.argmax(1))
    # the default (int8 stem, bf16 downsample where the CPU has them): the same predictions on
    # real test images but for the rare image near a decision boundary
    from autobin.data import load_dataset

    test = load_dataset("mnist5k", "test")
    images = torch.stack([test[i][0] for i in range(64)])
    with torch.no_grad():
        agree = (fast(images).argmax(1) == fake(images).argmax(1)).sum()
    assert int(agree) >= 63


@pytest.mark.slow
def test_deployed_zoo_entry_reaches_its_recorded_accuracy():
    from autobin.data import load_dataset
    from autobin.train import evaluate

    recorded = autobin.zoo.show(ENTRY, zoo_dir=ZOO)["metrics"]["top1_mnist5k_test"]
    test = load_dataset("mnist5k", "test")
    fast = autobin.zoo.load(ENTRY, zoo_dir=ZOO, deploy=True)  # float_parts="auto"
    exact = autobin.deploy(autobin.zoo.load(ENTRY, zoo_dir=ZOO), float_parts="fp32")
    # one image of 1,000 may sit on a threshold: the limit is a drop of 0.1 point
    for model in (fast, exact):
        acc = evaluate(model, test)["acc"]
        assert recorded - acc <= 0.1 + 1e-9 and acc - recorded <= 0.1 + 1e-9


def test_packed_linear_appears_for_binary_linears():
    bnn = _binarized("vit_tiny_patch16_224", "adabin-full", 32, num_classes=5, img_size=32)
    fast = autobin.deploy(bnn)
    assert any(isinstance(m, PackedLinear) for m in fast.modules())
