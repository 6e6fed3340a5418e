"""Released AdaBin checkpoints load into models binarized with ``adabin-reference`` and compute
exactly what the released layers compute (forward and gradients, float64)."""

from __future__ import annotations

import argparse

import pytest
import torch
from released_layers import (
    ReleasedAdaBinConv2d,
    ReleasedResNet,
    randomize,
    released_checkpoint,
    tiny_resnet,
)

import autobin
from autobin.compat import ReferenceCheckpointError, load_reference_checkpoint
from autobin.nn import AdaBinConv2d, Maxout

F64 = torch.float64
T, K = 0.37, 2.7  # an EDE point in the middle of the released schedule


def _released_model() -> ReleasedResNet:
    torch.manual_seed(0)
    return randomize(tiny_resnet(released=True).double(), T, K)


def _checkpoint(ref: ReleasedResNet) -> dict:
    return released_checkpoint(ref, best_prec1=88.1)


def _autobin_model() -> torch.nn.Module:
    model = tiny_resnet(released=False)
    bnn = autobin.binarize(
        model, "adabin-reference", example_inputs=(torch.zeros(2, 3, 16, 16),)
    ).double()
    for m in bnn.modules():
        if isinstance(m, AdaBinConv2d):
            m.set_ede(T, K)
    return bnn


def test_recipe_binarizes_the_released_layers_and_nothing_else():
    bnn = _autobin_model()
    binary = {n for n, m in bnn.named_modules() if isinstance(m, AdaBinConv2d)}
    released = {
        n for n, m in _released_model().named_modules() if isinstance(m, ReleasedAdaBinConv2d)
    }
    assert binary == released
    assert all(m.act_form == "code" and m.weight_estimator == "ede" for m in bnn.modules()
               if isinstance(m, AdaBinConv2d))  # fmt: skip
    maxouts = {n for n, m in bnn.named_modules() if isinstance(m, Maxout)}
    blocks = {f"layer{s}.0.nonlinear{i}" for s in (1, 2) for i in (1, 2)}
    assert maxouts == {"nonlinear1", *blocks}  # the stem's too, as in the released ResNets


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_and_gradients_equal_the_released_layers(tmp_path, mode):
    ref = _released_model()
    path = tmp_path / "model.th"
    torch.save(_checkpoint(ref), path)
    bnn = _autobin_model()
    extras = load_reference_checkpoint(bnn, path)
    assert extras == {"best_prec1": 88.1}
    ref.train(mode == "train")
    bnn.train(mode == "train")
    x = torch.randn(4, 3, 16, 16, dtype=F64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out_ref, out = ref(x), bnn(x2)
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(out_ref, [x, *ref.parameters()], g)
    grads = torch.autograd.grad(out, [x2, *bnn.parameters()], g)
    torch.testing.assert_close(grads[0], grads_ref[0], rtol=1e-10, atol=1e-12)
    named_ref = dict(zip([n for n, _ in ref.named_parameters()], grads_ref[1:]))
    renames = {"binary_a.alpha_a": "act_alpha", "binary_a.beta_a": "act_beta",
               "pos_scale": "gamma_pos", "neg_scale": "gamma_neg"}  # fmt: skip
    checked = 0
    for (name, p), grad in zip(bnn.named_parameters(), grads[1:]):
        ref_name = name
        for released, ours in renames.items():
            if name.endswith(ours):
                ref_name = name[: -len(ours)] + released
        torch.testing.assert_close(
            grad, named_ref[ref_name].reshape(p.shape), rtol=1e-9, atol=1e-12, msg=name
        )
        checked += 1
    assert checked == len(named_ref)


def test_bare_state_dict_without_prefix_and_old_batchnorm_counters():
    ref = _released_model()
    state = {k: v for k, v in ref.state_dict().items() if "num_batches_tracked" not in k}
    bnn = _autobin_model()
    assert load_reference_checkpoint(bnn, state) == {}
    assert torch.equal(bnn.layer1[0].conv1.act_alpha, ref.layer1[0].conv1.binary_a.alpha_a[0])


def test_missing_and_unexpected_keys_are_named():
    state = _checkpoint(_released_model())
    del state["state_dict"]["module.layer2.0.conv2.binary_a.beta_a"]
    state["state_dict"]["module.layer1.9.weight"] = torch.zeros(1)
    with pytest.raises(ReferenceCheckpointError) as err:
        load_reference_checkpoint(_autobin_model(), state)
    msg = str(err.value)
    assert "'layer2.0.conv2.act_beta'" in msg and "'layer1.9.weight'" in msg


def test_shape_mismatch_is_refused():
    state = _checkpoint(_released_model())
    state["state_dict"]["module.linear.weight"] = torch.zeros(5, 16, dtype=F64)
    with pytest.raises(ReferenceCheckpointError, match=r"'linear.weight' has shape \(5, 16\)"):
        load_reference_checkpoint(_autobin_model(), state)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("layer1.0.conv1.binary_a.alpha_a", float("nan"), r"'layer1.0.conv1.act_alpha' holds NaN"),
        ("layer1.0.conv1.binary_a.alpha_a", -0.5, r"act_alpha' .* is \[-0.5\].*must be positive"),
        ("layer1.0.conv1.binary_a.alpha_a", 0.0, r"is \[0.0\], but .* alpha_a must be positive"),
        ("layer1.0.conv1.binary_a.beta_a", float("inf"), r"'layer1.0.conv1.act_beta' holds NaN"),
    ],
    ids=["nan-alpha", "negative-alpha", "zero-alpha", "inf-beta"],
)
def test_impossible_activation_sets_are_refused(key, value, message):
    state = _checkpoint(_released_model())
    state["state_dict"][f"module.{key}"].fill_(value)
    model = _autobin_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ReferenceCheckpointError, match=message):
        load_reference_checkpoint(model, state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_paper_form_model_is_refused():
    model = autobin.binarize(
        tiny_resnet(released=False), "adabin", example_inputs=(torch.zeros(2, 3, 16, 16),)
    )
    with pytest.raises(ReferenceCheckpointError, match=r"act_form 'paper'.*adabin-reference"):
        load_reference_checkpoint(model, _checkpoint(_released_model()))


def test_pickled_objects_are_refused_unless_allowed(tmp_path):
    ckpt = _checkpoint(_released_model())
    ckpt["args"] = argparse.Namespace(lr=0.1)  # what training scripts often save along
    path = tmp_path / "model.th"
    torch.save(ckpt, path)
    with pytest.raises(ReferenceCheckpointError, match="allow_pickle=True"):
        load_reference_checkpoint(_autobin_model(), path)
    with pytest.warns(UserWarning, match="allow_pickle=True"):
        load_reference_checkpoint(_autobin_model(), path, allow_pickle=True)


def test_damaged_or_missing_file_is_named(tmp_path):
    path = tmp_path / "model.th"
    torch.save(_checkpoint(_released_model()), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ReferenceCheckpointError, match=r"model\.th: not a readable"):
        load_reference_checkpoint(_autobin_model(), path)
    with pytest.raises(ReferenceCheckpointError, match="no such checkpoint file"):
        load_reference_checkpoint(_autobin_model(), tmp_path / "absent.th")
