"""The obvious calls: inferred example inputs, every recipe form, arguments binarize refuses,
layers it cannot binarize, and a float reference that is never saved with the model."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import autobin
from autobin.errors import AutobinError, BinarizeError, ModelTypeError
from autobin.graph import NothingBinarizedWarning, binarize, explain, float_model_of
from autobin.nn import BinaryLayer
from autobin.recipes import RecipeError, load_recipe


def _binary_names(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, BinaryLayer)}


# ------------------------------------------------------------------------------ example inputs
def test_timm_model_with_one_input_channel():
    model = timm.create_model("resnet18", in_chans=1, num_classes=10)
    result = binarize(model)
    assert autobin.info(result).report.input_shape == (1, 224, 224)
    assert len(_binary_names(result)) == 16
    assert result(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_timm_model_with_its_own_image_size():
    model = timm.create_model("vit_tiny_patch16_224", img_size=96, num_classes=5, depth=2)
    report = explain(model, "adabin-full")
    assert report.input_shape == (3, 96, 96)
    assert report.totals["binarized_layers"] == 8  # qkv, proj, fc1, fc2 of two blocks


def test_explicit_example_inputs_win():
    model = timm.create_model("resnet18", in_chans=2, num_classes=3)
    report = explain(model, example_inputs=torch.randn(1, 2, 32, 48))
    assert report.input_shape == (2, 32, 48)


# ------------------------------------------------------------------------------ recipe forms
def test_every_recipe_form_gives_the_same_model(tmp_path):
    model = timm.create_model("resnet18", num_classes=4)
    path = tmp_path / "mine.yaml"
    path.write_text("schema_version: 1\nname: mine\nextends: adabin\n")
    reference = load_recipe("adabin")
    forms = [
        "adabin",
        reference,
        path,  # a Path
        str(path),
        reference.to_dict(),  # a mapping
        {"schema_version": 1, "name": "mapped", "extends": "adabin"},
    ]
    expected = _binary_names(binarize(model, "adabin"))
    for recipe in forms:
        assert _binary_names(binarize(model, recipe)) == expected, recipe
        assert explain(model, recipe).totals["binarized_layers"] == len(expected)


def test_bad_recipe_argument_type():
    with pytest.raises(RecipeError, match="a recipe cannot be a int") as err:
        binarize(nn.Conv2d(1, 1, 1), 3)
    assert isinstance(err.value, AutobinError) and "adabin" in str(err.value)


# ------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("bad", [None, "resnet18", {"a": 1}, torch.zeros(2)])
def test_non_module_argument(bad):
    for call in (binarize, explain):
        with pytest.raises(ModelTypeError, match=r"takes a torch\.nn\.Module") as err:
            call(bad)
        assert isinstance(err.value, TypeError)


def test_torchscript_module_is_refused():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    with pytest.raises(BinarizeError, match=r"TorchScript.*binarize the Python model"):
        binarize(scripted)


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.temporal = nn.Conv1d(8, 8, 3, padding=1)
        self.volume = nn.Conv3d(1, 1, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)  # (N, 8, H, W)
        n, c, h, w = x.shape
        x = self.temporal(x.flatten(2)).view(n, c, h, w)
        x = self.volume(x.unsqueeze(1)).squeeze(1)
        return self.head(self.body(x))


def test_unsupported_layers_are_listed_as_kept_float():
    x = torch.randn(1, 3, 6, 6)
    result = binarize(Mixed(), example_inputs=x)
    entries = {e.name: e for e in autobin.info(result).report.entries}
    assert entries["body"].decision == "binarize"
    expected = (("temporal", "Conv1d", 36 * 8 * 8 * 3), ("volume", "Conv3d", 8 * 36 * 27))
    for name, kind, macs in expected:
        entry = entries[name]
        assert (entry.type_name, entry.decision, entry.rule) == (kind, "float", "unsupported")
        assert f"{kind} is not supported" in entry.reason and "kept float" in entry.reason
        assert entry.macs == macs
        assert type(result.get_submodule(name)).__name__ == kind
    totals = autobin.info(result).report.totals
    assert totals["conv_linear_macs"] == sum(e.macs for e in entries.values())


def test_nothing_binarized_warns():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 8, 8))
    with pytest.warns(NothingBinarizedWarning, match="binarizes no layer"):
        binarize(model, example_inputs=torch.randn(1, 3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingBinarizedWarning)
        binarize(timm.create_model("resnet18", num_classes=2))  # binarizes: no warning


# ------------------------------------------------------------------------------ float reference
def test_float_model_is_not_pickled_and_survives_deepcopy():
    model = timm.create_model("resnet18", num_classes=10)
    result = binarize(model)
    assert float_model_of(result) is model
    copied = copy.deepcopy(result)
    assert float_model_of(copied) is model  # shared, not dropped and not copied
    assert autobin.info(copied).report is not None and copied.pretrained_cfg == model.pretrained_cfg

    saved_binary, saved_state = io.BytesIO(), io.BytesIO()
    torch.save(result, saved_binary)
    torch.save(result.state_dict(), saved_state)
    # the module pickle is its state plus code and metadata, not a second (float) model
    float_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert len(saved_binary.getvalue()) < len(saved_state.getvalue()) + float_bytes // 4
    saved_binary.seek(0)
    loaded = torch.load(saved_binary, weights_only=False)
    assert float_model_of(loaded) is None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.eval()(x))


def test_report_and_model_describe_the_same_shortcuts():
    import operator

    result = binarize(timm.create_model("resnet18", num_classes=10))
    report = autobin.info(result).report
    shortcuts = report.layers(decision="shortcut")
    assert len(shortcuts) == 13  # every block conv but the three stride-2 ones
    assert {e.type_name for e in shortcuts} == {"operator.add"}
    adds = [n for n in result.graph.nodes if n.target is operator.add]
    assert len(adds) == 13 + 8  # the Bi-Real adds next to the blocks' own residual adds
    modules = dict(result.named_modules())
    for entry in report.entries:
        if entry.kind == "shortcut":
            continue
        module = modules[entry.name]  # every other entry is a module of the rewritten model
        if entry.decision == "binarize":
            assert isinstance(module, BinaryLayer)
        elif entry.decision == "maxout":
            assert type(module).__name__ == "Maxout"
        else:
            assert type(module).__name__ == entry.type_name
    assert "BiRealShortcut" not in str(report) and "BiRealShortcut" not in str(result)


def test_errors_share_one_base_class():
    assert issubclass(RecipeError, AutobinError) and issubclass(autobin.AutobinError, Exception)
    assert Path(autobin.__file__).exists()


class LinearPatchEmbed(nn.Module):
    """A ViT-like model whose first layer is a linear patch embedding (gemma4_vit style)."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg = {"input_size": (3, 16, 16)}
        self.embed = nn.Linear(3 * 4 * 4, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        n = x.shape[0]
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(n, 16, -1)
        return self.head(self.body(self.embed(patches)).mean(1))


def test_linear_patch_embedding_takes_the_timm_input_size():
    from autobin.graph import family_of

    def infer_input_shape(model):
        return family_of(model).input_shape(model)

    assert infer_input_shape(LinearPatchEmbed()) == (3, 16, 16)
    report = explain(LinearPatchEmbed(), "adabin-full")
    assert report.input_shape == (3, 16, 16) and report.totals["binarized_layers"] == 1
    assert infer_input_shape(nn.Sequential(nn.Linear(5, 3), nn.ReLU())) == (5,)
