"""publish infers timm's create_model arguments and input size from the binarized model."""

from __future__ import annotations

import timm
import torch

import autobin


def test_publish_infers_in_chans_and_input_size_from_binarize(tmp_path):
    float_model = timm.create_model("resnet10t", num_classes=7, in_chans=1)
    bnn = autobin.binarize(float_model, example_inputs=(torch.zeros(2, 1, 32, 32),)).eval()
    autobin.zoo.publish(bnn, "r10t.gray", zoo_dir=tmp_path)
    config = autobin.zoo.show("r10t.gray", zoo_dir=tmp_path)
    assert config["architecture"]["kwargs"] == {"num_classes": 7, "in_chans": 1}
    assert config["input_size"] == [1, 32, 32]
    loaded = autobin.zoo.load("r10t.gray", zoo_dir=tmp_path)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), bnn(x))
