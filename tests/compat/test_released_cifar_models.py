"""A checkpoint in the released code's format loads into autobin's registered ``resnet20_cifar``
binarized with ``adabin-reference``, with no key mapping of its own, and computes the same
logits as the released architecture (re-implemented independently in released_layers.py)."""

from __future__ import annotations

import pytest
import timm
import torch
from released_layers import randomize, released_checkpoint, resnet20

import autobin
import autobin.models  # registers the CIFAR architectures
from autobin.compat import load_reference_checkpoint
from autobin.nn import AdaBinConv2d, Maxout

F64 = torch.float64
T, K = 0.21, 4.76  # an EDE point (k = 1/t) early in the released schedule


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _binarized_resnet20() -> torch.nn.Module:
    bnn = autobin.binarize(timm.create_model("resnet20_cifar"), recipe="adabin-reference")
    for m in bnn.modules():
        if isinstance(m, AdaBinConv2d):
            m.set_ede(T, K)
    return bnn.double()


def test_resnet20_has_the_released_parameter_count():
    # 0.27M float parameters (AdaBin Table 3 / the released code); binarized, each of the 18
    # binary convs adds alpha_a and beta_a and each of the 19 Maxouts two slopes per channel
    assert _params(timm.create_model("resnet20_cifar")) == _params(resnet20(False)) == 269_850
    bnn = _binarized_resnet20()
    assert (
        _params(bnn) == _params(resnet20(True)) == 269_850 + 18 * 2 + 2 * (16 + 6 * (16 + 32 + 64))
    )
    assert len([m for m in bnn.modules() if isinstance(m, Maxout)]) == 19


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_released_checkpoint_gives_identical_logits(tmp_path, mode):
    torch.manual_seed(0)
    ref = randomize(resnet20(released=True).double(), T, K)
    assert {"module.nonlinear1.pos_scale", "module.nonlinear1.neg_scale", "module.bn2.running_var",
            "module.linear.weight"} <= set(released_checkpoint(ref)["state_dict"])  # fmt: skip
    path = tmp_path / "model.th"
    torch.save(released_checkpoint(ref, best_prec1=88.1), path)
    bnn = _binarized_resnet20()
    assert load_reference_checkpoint(bnn, path) == {"best_prec1": 88.1}
    ref.train(mode == "train")
    bnn.train(mode == "train")
    x = torch.randn(8, 3, 32, 32, dtype=F64)
    with torch.no_grad():
        logits_ref, logits = ref(x), bnn(x)
    torch.testing.assert_close(logits, logits_ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(logits.argmax(1), logits_ref.argmax(1))
    assert logits.std() > 0.1  # a real network output, not a degenerate constant


def test_checkpoint_of_another_depth_is_refused_naming_the_keys():
    torch.manual_seed(0)
    state = released_checkpoint(randomize(resnet20(released=True).double(), T, K))
    bnn = timm.create_model("resnet18_cifar")
    bnn = autobin.binarize(bnn, recipe="adabin-reference")
    expected = r"missing 'layer2\.0\.shortcut\.0\.weight'.*unexpected 'layer1\.2\.conv1\.weight'"
    with pytest.raises(autobin.compat.ReferenceCheckpointError, match=expected):
        load_reference_checkpoint(bnn, state)
