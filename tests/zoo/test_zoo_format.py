"""The packed safetensors format (autobin.zoo.format): exactness, naming, sizes, options."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from autobin.quantizers.packing import packed_nbytes, unpack_signs
from autobin.zoo import ZooFormatError, load_packed_state, read_packed, save_packed
from autobin.zoo.format import FORMAT_NAME, packed_state


def _round_trip(kit, tmp_path, arch, **opts):
    model, x = kit.make(arch)
    path = tmp_path / "model.safetensors"
    save_packed(model, path, **opts)
    tensors, meta = read_packed(path)
    fresh = kit.ARCHS[arch]()
    load_packed_state(fresh, tensors, meta, keep_latent=opts.get("keep_latent", False))
    return model, fresh.eval(), x, path


@pytest.mark.parametrize("arch", ["tiny-cnn", "tiny-baselines", "tiny-tokens"])
def test_loaded_outputs_are_identical(kit, tmp_path, arch):
    model, loaded, x, _ = _round_trip(kit, tmp_path, arch)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for name, layer in kit.binary_layers(loaded).items():
        assert layer.frozen
        original = kit.binary_layers(model)[name]
        assert torch.equal(layer.binary_weight(), original.binary_weight())


def test_tensor_naming_metadata_and_exact_sign_bytes(kit, tmp_path):
    model, _ = kit.make("tiny-cnn")
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    raw = load_file(path)
    # layer "6" is AdaBinConv2d(15, 21, 3, groups=3): weight (21, 5, 3, 3), 945 signs.
    assert raw["6.weight.signs_packed"].dtype == torch.uint8
    assert raw["6.weight.signs_packed"].numel() == packed_nbytes(945) == 119
    assert raw["6.weight.alpha_w"].dtype == torch.float32
    assert raw["6.weight.alpha_w"].shape == (21,)
    assert raw["6.weight.beta_w"].shape == (21,)
    assert "6.weight" not in raw  # latent weight not stored by default
    assert "6.bias" in raw and "6.act_alpha" in raw and "6.act_beta" in raw
    assert "2.gamma_pos" in raw and "1.running_var" in raw and "0.weight" in raw
    signs = unpack_signs(raw["6.weight.signs_packed"], (21, 5, 3, 3))
    assert torch.equal(signs, model[6].weight_signs())
    alpha, beta = model[6].weight_binary_set()
    assert torch.equal(raw["6.weight.alpha_w"], alpha) and torch.equal(raw["6.weight.beta_w"], beta)
    _, meta = read_packed(path)
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == "1"
    assert meta["bit_order"] == "little" and meta["keep_latent"] == "false"
    info = json.loads(meta["binary_layers"])
    assert info["6"]["shape"] == [21, 5, 3, 3] and info["6"]["method"] == "adabin"
    assert set(info) == set(kit.binary_layers(model))


def test_binary_model_file_is_small(tmp_path):
    from torch import nn

    from autobin.nn import AdaBinConv2d

    model = nn.Sequential(AdaBinConv2d(64, 64, 3, bias=False), AdaBinConv2d(64, 64, 3, bias=False))
    path = tmp_path / "m.safetensors"
    summary = save_packed(model, path)
    assert summary["sign_bytes"] == 2 * 64 * 64 * 9 // 8
    float_bytes = 2 * 64 * 64 * 9 * 4
    assert path.stat().st_size == summary["file_bytes"] < float_bytes / 20


def test_float16_option(kit, tmp_path):
    model, loaded, x, path = _round_trip(kit, tmp_path, "tiny-cnn", float_dtype="float16")
    raw = load_file(path)
    assert raw["0.weight"].dtype == torch.float16
    assert raw["1.running_mean"].dtype == torch.float16
    assert raw["3.weight.alpha_w"].dtype == torch.float32  # binary sets stay exact
    assert raw["3.act_alpha"].dtype == torch.float32 and raw["3.act_beta"].dtype == torch.float32
    assert raw["1.num_batches_tracked"].dtype == torch.int64
    for name, layer in kit.binary_layers(loaded).items():
        assert torch.equal(layer.binary_weight(), kit.binary_layers(model)[name].binary_weight())
    assert next(loaded.parameters()).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0.05, atol=0.05)
    f32 = tmp_path / "f32.safetensors"
    save_packed(model, f32)
    assert path.stat().st_size < f32.stat().st_size


def test_keep_latent_restores_trainable_model(kit, tmp_path):
    model, loaded, x, path = _round_trip(kit, tmp_path, "tiny-cnn", keep_latent=True)
    assert "3.weight" in load_file(path)
    for name, layer in kit.binary_layers(loaded).items():
        assert not layer.frozen
        assert torch.equal(layer.weight, kit.binary_layers(model)[name].weight)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    loaded.train()
    loaded(x).sum().backward()
    assert loaded[3].weight.grad is not None and loaded[3].act_alpha.grad is not None


def test_keep_latent_file_loads_frozen_too(kit, tmp_path):
    model, x = kit.make("tiny-tokens")
    path = tmp_path / "m.safetensors"
    save_packed(model, path, keep_latent=True)
    fresh = kit.ARCHS["tiny-tokens"]()
    load_packed_state(fresh, *read_packed(path), keep_latent=False)
    assert fresh.fc1.frozen
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))


def test_keep_latent_needs_latent_weights(kit, tmp_path):
    model, _ = kit.make("tiny-cnn")
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    with pytest.raises(ZooFormatError, match="published without latent"):
        load_packed_state(kit.ARCHS["tiny-cnn"](), *read_packed(path), keep_latent=True)


def test_frozen_model_round_trips(kit, tmp_path):
    model, x = kit.make("tiny-cnn")
    with torch.no_grad():
        expected = model(x)
    for layer in kit.binary_layers(model).values():
        layer.freeze()
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    fresh = kit.ARCHS["tiny-cnn"]()
    load_packed_state(fresh, *read_packed(path))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), expected)
    with pytest.raises(ValueError, match="frozen"):
        packed_state(model, keep_latent=True)


def test_refuses_float_weight_layers(kit):
    model, _ = kit.make("tiny-cnn")
    model[3].binarize_weights = False
    with pytest.raises(ValueError, match="binarize_weights=False"):
        packed_state(model)


def test_binarize_activations_flag_is_restored(kit, tmp_path):
    model, x = kit.make("tiny-cnn")
    model[3].binarize_activations = False
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    fresh = kit.ARCHS["tiny-cnn"]()
    load_packed_state(fresh, *read_packed(path))
    assert fresh[3].binarize_activations is False
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))


def test_mismatched_model_is_refused(kit, tmp_path):
    model, _ = kit.make("tiny-cnn")
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    with pytest.raises(ZooFormatError, match="binary layers differ"):
        load_packed_state(kit.ARCHS["tiny-tokens"](), *read_packed(path))
    with pytest.raises(ZooFormatError, match="shape"):
        load_packed_state(kit.ARCHS["tiny-cnn"](num_classes=7), *read_packed(path))
    other = kit.ARCHS["tiny-cnn"]()
    other[11].body[0].act_form = "paper"
    with pytest.raises(ZooFormatError, match="act_form"):
        load_packed_state(other, *read_packed(path))


def test_bad_files_are_refused_with_the_file_name(kit, tmp_path):
    model, _ = kit.make("tiny-cnn")
    path = tmp_path / "m.safetensors"
    save_packed(model, path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match=r"cut\.safetensors"):
        read_packed(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(ZooFormatError, match="too short"):
        read_packed(tmp_path / "tiny.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, tmp_path / "plain.safetensors", metadata={"format": "pt"})
    with pytest.raises(ZooFormatError, match="not an autobin packed checkpoint"):
        read_packed(tmp_path / "plain.safetensors")


def test_unknown_float_dtype(kit):
    model, _ = kit.make("tiny-cnn")
    with pytest.raises(ValueError, match="valid choices"):
        packed_state(model, float_dtype="bfloat16")


def test_float16_overflow_is_refused(kit):
    model, _ = kit.make("tiny-cnn")
    model[1].running_var.fill_(1e6)
    with pytest.raises(ValueError, match=r"'1\.running_var' has values beyond the float16 range"):
        packed_state(model, float_dtype="float16")
