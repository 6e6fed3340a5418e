"""Model families: one adapter per family, found through one table.

A fourth family is defined inside the test (one class and one registration) and is then used
by ``binarize``, ``explain``, the report, ``autobin.info`` and the zoo without any other change:
that is the extension contract of autobin.graph.families.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import timm
import torch
import torchvision
from torch import nn

import autobin
from autobin.graph import ModelFamily, family_of, register_family
from autobin.graph.families import TimmFamily, TorchvisionFamily, unregister_family
from autobin.graph.families.torchvision import identify
from autobin.graph.plan import ActivationEntry, Decision, LayerEntry, ShortcutEntry
from autobin.model_info import ModelInfo
from autobin.nn import AdaBinConv2d, Maxout


class TwoHeads(nn.Module):
    """A toy 'family' member: a trunk and two prediction heads, returning both outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.box = nn.Conv2d(8, 4, 1)
        self.cls = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        y = self.body(self.stem(x))
        box = self.box(y)
        return self.cls(y), box


class ToyFamily(ModelFamily):
    """Trace only the body; the example image is 2 x 12 x 12; zoo records by channel count."""

    name = "toy"
    library = "toy"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, TwoHeads)

    def input_shape(self, model: nn.Module) -> tuple[int, ...]:
        return (2, 12, 12)

    def prediction_layers(self, model, returned: Sequence[str], inputs=()) -> tuple[str, ...]:
        return ("cls",)  # box is returned too, yet binarized: the family decides

    def trace_parts(self, model: nn.Module) -> tuple[str, ...]:
        return ("body",)

    def zoo_architecture(self, model, input_shape) -> dict[str, Any]:
        return {"library": "toy", "name": "two-heads", "kwargs": {}}

    def float_skeleton(self, architecture: Mapping[str, Any]) -> nn.Module:
        return TwoHeads()


@pytest.fixture
def toy_family():
    family = register_family(ToyFamily())
    yield family
    unregister_family("toy")


def test_a_family_defined_here_drives_the_whole_pass(toy_family, tmp_path):
    model = TwoHeads().eval()
    assert family_of(model) is toy_family
    bnn = autobin.binarize(model)
    record = autobin.info(bnn)
    assert record.family == "toy" and record.architecture["name"] == "two-heads"
    assert record.report.input_shape == (2, 12, 12)
    decisions = {e.name: e.decision for e in record.report.entries if e.kind == "conv"}
    # stem: first layer to run; cls: the family's prediction layer (and the last to run);
    # box: returned by the model, but not a prediction layer of this family -> binarized
    assert decisions == {"stem": "float", "body.0": "binarize", "box": "binarize", "cls": "float"}
    regions = [(r["name"], r["traced"]) for r in record.report.regions]
    assert regions == [("body", True)]  # only the part the family named was traced
    assert isinstance(bnn, TwoHeads) and isinstance(bnn.body, torch.fx.GraphModule)
    body = dict(bnn.body.named_children())
    assert isinstance(body["0"], AdaBinConv2d) and isinstance(body["2"], Maxout)
    x = torch.randn(3, 2, 12, 12)
    cls, box = bnn(x)
    assert cls.shape == (3, 3, 12, 12) and box.shape == (3, 4, 12, 12)
    # the zoo rebuilds it through the family, from its record alone
    autobin.zoo.publish(bnn, "toy.adabin", zoo_dir=tmp_path)
    loaded = autobin.zoo.load("toy.adabin", zoo_dir=tmp_path)
    bnn.eval()
    with torch.no_grad():
        for a, b in zip(loaded(x), bnn(x)):
            assert torch.equal(a, b)


def test_family_table_order_and_fallback():
    assert isinstance(family_of(timm.create_model("resnet18")), TimmFamily)
    assert isinstance(family_of(torchvision.models.resnet18()), TorchvisionFamily)
    plain = family_of(nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert type(plain) is ModelFamily and plain.name == "plain"


def test_torchvision_models_binarize_and_are_identified_by_name():
    model = torchvision.models.resnet18(num_classes=7)
    assert identify(model) == ("resnet18", {"num_classes": 7})
    assert identify(torchvision.models.resnet34()) == ("resnet34", {})
    bnn = autobin.binarize(model)
    record = autobin.info(bnn)
    assert record.family == "torchvision" and record.report.model == "resnet18"
    assert record.architecture == {"library": "torchvision", "name": "resnet18",
                                   "kwargs": {"num_classes": 7}}  # fmt: skip
    names = {e.name: e.decision for e in record.report.entries if e.kind in ("conv", "linear")}
    assert names["conv1"] == "float" and names["fc"] == "float"  # stem and prediction layer
    assert names["layer1.0.conv1"] == "binarize" and names["layer2.0.downsample.0"] == "float"
    assert sum(d == "binarize" for d in names.values()) == 16
    y = bnn(torch.randn(2, 3, 64, 64))
    y.sum().backward()
    assert y.shape == (2, 7)


def test_torchvision_input_size_comes_from_the_builders_weights_metadata():
    inception = torchvision.models.inception_v3(init_weights=False)
    assert family_of(inception).input_shape(inception) == (3, 299, 299)  # not 224
    mobilenet = torchvision.models.mobilenet_v3_small()
    assert family_of(mobilenet).input_shape(mobilenet) == (3, 224, 224)


def test_a_modified_torchvision_model_has_no_zoo_name():
    model = torchvision.models.resnet18()
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # one input channel: not a builder's
    assert identify(model) is None
    bnn = autobin.binarize(model)
    assert autobin.info(bnn).architecture is None


def test_publish_and_load_a_torchvision_model_by_name(tmp_path):
    model = torchvision.models.resnet18(num_classes=5).eval()
    bnn = autobin.binarize(model).eval()
    autobin.zoo.publish(bnn, "resnet18.tv_adabin", zoo_dir=tmp_path)
    config = autobin.zoo.show("resnet18.tv_adabin", zoo_dir=tmp_path)
    assert config["architecture"] == {"library": "torchvision", "name": "resnet18",
                                      "kwargs": {"num_classes": 5}}  # fmt: skip
    loaded = autobin.zoo.load("resnet18.tv_adabin", zoo_dir=tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), bnn(x))


def test_info_is_one_record_kept_by_deepcopy_and_torch_save():
    model = timm.create_model("resnet18", num_classes=4)
    bnn = autobin.binarize(model)
    record = autobin.info(bnn)
    assert isinstance(record, ModelInfo)
    assert record.float_model is model and record.recipe.name == "adabin"
    assert record.architecture == {"library": "timm", "name": "resnet18",
                                   "kwargs": {"num_classes": 4}}  # fmt: skip
    assert [k for k in vars(bnn) if k.startswith(("autobin", "_autobin"))] == ["autobin_info"]
    copied = copy.deepcopy(bnn)
    assert autobin.info(copied).float_model is model  # shared, not copied
    assert autobin.info(copied).report.to_dict() == record.report.to_dict()
    buffer = io.BytesIO()
    torch.save(bnn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert autobin.info(loaded).float_model is None  # the float model is not stored
    assert autobin.info(loaded).report.totals == record.report.totals
    assert autobin.info(model) is None  # a float model has no record


def test_plan_entries_are_typed_and_apply_themselves():
    model = timm.create_model("resnet18", num_classes=4)
    report = autobin.explain(model)
    kinds = {type(e) for e in report.entries}
    assert kinds == {LayerEntry, ActivationEntry, ShortcutEntry}
    assert all(isinstance(e.decision, Decision) for e in report.entries)
    conv = next(e for e in report.entries if e.name == "layer1.0.conv1")
    assert conv.decision is Decision.BINARIZE and conv.label == "binarize (adabin)"
    assert conv.to_dict()["decision"] == "binarize"


class ReadsReluAttribute(nn.Module):
    """Untraceable (data-dependent branch) and reads an attribute only ReLU has."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv(self.stem(x))
        if y.sum() > 1e9:  # a branch on a value: torch.fx cannot trace this
            y = y * 0
        y = self.act(y) if not self.act.inplace else y
        return self.head(y)


def test_binarize_runs_the_result_and_names_where_it_fails():
    with pytest.raises(autobin.AutobinError, match=r"in module 'act'|inplace") as err:
        autobin.binarize(ReadsReluAttribute())
    assert "'Maxout' object has no attribute 'inplace'" in str(err.value)


def test_tresnet_input_channels_come_from_the_model_not_its_space_to_depth_stem():
    model = timm.create_model("tresnet_m", num_classes=3)
    assert family_of(model).input_shape(model) == (3, 224, 224)
    gray = timm.create_model("resnet18", in_chans=1)
    assert family_of(gray).input_shape(gray) == (1, 224, 224)


class OptionalMask(nn.Module):
    """A model with an optional argument its callers leave out (Hiera's ``mask=None``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x, mask=None):
        y = self.conv(self.stem(x))
        if mask is not None:
            y = y * mask.view(-1, 1, 1, 1)
        return self.head(y)


def test_optional_arguments_the_example_leaves_out_are_traced_as_none():
    bnn = autobin.binarize(OptionalMask())
    assert isinstance(bnn, torch.fx.GraphModule)  # traced whole, for mask=None:
    assert not any(n.op == "call_method" and n.target == "view" for n in bnn.graph.nodes)
    assert bnn(torch.randn(2, 3, 16, 16)).shape == (2, 2, 16, 16)
