"""``autobin.deploy`` on a binarized mmdet detector: the committed zoo SSD, deployed in place.

The deployed detector stays an mmdet detector (``test_step``/``predict`` run mmdet's code), its
backbone and neck run packed kernels and its prediction convs stay float32; each packed layer
reproduces the fake-quantized one within the documented bound, and on the regenerated
mnist-det-small test split its mAP is that of the fake-quantized detector computed exactly
(float64), see :func:`test_deployed_detector_has_the_map_of_the_fake_quantized_one`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from deploy_checks import assert_layerwise_within_bound

import autobin
from autobin.deploy import DeployInputError, PackedConv2d
from autobin.nn import BinaryLayer

pytestmark = pytest.mark.mmdet

ZOO = Path(__file__).resolve().parents[2] / "zoo"
NAME = "ssd128_r18.adabin_mnist-det-small"


@pytest.fixture(scope="module")
def fake():
    import autobin.integrations.mmdet  # registers the zoo's mmdet rebuild

    return autobin.zoo.load(NAME, zoo_dir=ZOO).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory, fake):
    """Four preprocessed test images of a regenerated mnist-det-small split."""
    from mmengine.dataset import pseudo_collate

    from autobin.data.mnist_det import write_preset
    from autobin.integrations.mmdet.evaluate import test_pipeline, voc_dataset

    root = write_preset("mnist-det-small", tmp_path_factory.mktemp("mds") / "d", trainval=1, test=4)
    dataset = voc_dataset(root, "test", test_pipeline((128, 128)))
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    return batch, fake.data_preprocessor(batch, False)["inputs"]


def test_deployed_detector_is_the_mmdet_detector_with_packed_parts(fake, images):
    from autobin.integrations.mmdet import prediction_convs

    batch, x = images
    fast = autobin.deploy(fake)
    assert type(fast) is type(fake) and fast is not fake
    summary = autobin.info(fast).deployment
    n_binary = sum(isinstance(m, BinaryLayer) for m in fake.modules())
    assert len(summary.packed) == n_binary > 0 and not summary.kept
    assert not any(isinstance(m, BinaryLayer) for m in fast.modules())
    assert any(isinstance(m, BinaryLayer) for m in fake.modules())  # the source is untouched
    assert all(p.startswith(("backbone.", "neck.")) for p in summary.packed)
    # auto keeps a detector's float convs float32, in autobin's kernel; the prediction convs
    # stay float32 in torch always
    downsample = {f"backbone.layer{i}.0.downsample.0" for i in (2, 3, 4)}  # float in ssd-adabin
    float_convs = {"backbone.stem.0", *downsample}
    assert summary.float_parts == "fp32-kernel"
    assert summary.low_precision == dict.fromkeys(float_convs, "fp32-kernel")
    assert fast.backbone.stem[0].maxout is not None  # the stem's Maxout is in its epilogue
    int8 = autobin.info(autobin.deploy(fake, float_parts="int8")).deployment
    preds = prediction_convs(fake, x[:1])
    assert len(preds) == 8 and set(int8.float32_layers) == set(preds)
    assert set(int8.low_precision) == float_convs
    # compiled chains end where a value is used outside the run (a returned feature map:
    # layer2, layer3 and layer4's outputs); the float convs run inside them, so: the stem to
    # layer2, layer3, layer4 (each with its downsample conv), the neck's extra level
    chains = summary.compiled_chains
    assert [(c[0], c[-1]) for c in chains] == [
        ("backbone.stem.0", "backbone.layer2.1.conv2"),
        *((f"backbone.layer{i}.0.conv1", f"backbone.layer{i}.1.conv2") for i in (3, 4)),
        ("neck.extra_layers.0.0.conv", "neck.extra_layers.0.1.conv"),
    ]
    assert [len(c) for c in chains] == [13, 5, 5, 2]
    assert all(f"backbone.layer{i}.0.downsample.0" in chains[i - 2] for i in (2, 3, 4))
    # torch's float32 convs (float_parts="fp32") cut the runs at the downsample convs, which
    # run before the chain and hand their value over as its second input
    torch_chains = autobin.info(autobin.deploy(fake, float_parts="fp32")).deployment
    assert [(c[0], c[-1]) for c in torch_chains.compiled_chains] == [
        ("backbone.stem.3", "backbone.layer1.1.conv2"),
        *((f"backbone.layer{i}.0.conv1", f"backbone.layer{i}.1.conv2") for i in (2, 3, 4)),
        ("neck.extra_layers.0.0.conv", "neck.extra_layers.0.1.conv"),
    ]
    assert autobin.deploy(fast) is fast
    # mmdet's own predict path runs on it
    with torch.no_grad():
        results = fast.test_step(batch)
    assert len(results) == len(batch["inputs"]) and len(results[0].pred_instances) > 0
    with pytest.raises(DeployInputError, match="3-channel"):
        fast(x[:, :2])
    nan = x.clone()
    nan[0, 0, 3, 4] = float("nan")
    with pytest.raises(DeployInputError, match="NaN"):
        fast(nan)


def test_deployed_detector_layers_and_raw_outputs_match_the_fake_quantized_one(fake, images):
    _, x = images
    fast = autobin.deploy(fake, float_parts="fp32")
    assert_layerwise_within_bound(fake, fast, x)
    packed = [m for m in fast.modules() if isinstance(m, PackedConv2d)]
    assert len(packed) == len(autobin.info(fast).deployment.packed)
    with torch.no_grad():
        ref, out = fake(x), fast(x)
    # raw head outputs (class scores and box deltas per level) per image: equal up to float
    # rounding, unless an activation of that image sits within rounding of its threshold and
    # flips (measured on 10 of the 200 test images): at most one of these four
    close = torch.ones(len(x), dtype=torch.bool)
    for ref_level, out_level in zip(ref, out):
        for r, y in zip(ref_level, out_level):
            assert r.shape == y.shape
            err = (r - y).abs().flatten(1).amax(dim=1)
            close &= err <= 1e-5 * r.abs().flatten(1).amax(dim=1)
    assert int(close.sum()) >= len(x) - 1, close


def test_deployed_detectors_chains_equal_its_layers_called_one_by_one(fake, images):
    """The compiled chains give the backbone's and neck's features of the layers called one by
    one, bit for bit, on every kernel path: with the float convs in autobin's kernel (inside
    the chains, the stem's output packed by its epilogue) and in torch (the downsample conv's
    output handed to the chain as a second input)."""
    from autobin.deploy import available_kernels, use_kernel

    _, x = images
    for float_parts, n_chains in (("fp32-kernel", 4), ("fp32", 5)):
        fast = autobin.deploy(fake, float_parts=float_parts)
        plain = autobin.deploy(fake, float_parts=float_parts, compile_graph=False)
        assert len(autobin.info(fast).deployment.compiled_chains) == n_chains
        for path in [p for p in available_kernels() if p != "reference"]:
            with use_kernel(path), torch.no_grad():
                for batch in (x[:1], x):
                    feats = fast.neck(fast.backbone(batch))
                    ref = plain.neck(plain.backbone(batch))
                    assert len(feats) == len(ref) == 4
                    assert all(torch.equal(f, r) for f, r in zip(feats, ref)), path


def _float64_features(detector: torch.nn.Module) -> torch.nn.Module:
    """The fake-quantized detector with its backbone and neck computed in float64: the
    binarized network's arithmetic almost exactly (the head, float in both, stays float32)."""
    exact = copy.deepcopy(detector)
    backbone, neck = exact.backbone.double(), exact.neck.double()
    run_backbone, run_neck = backbone.forward, neck.forward
    backbone.forward = lambda x: run_backbone(x.double())
    neck.forward = lambda feats: tuple(f.float() for f in run_neck(feats))
    return exact


@pytest.mark.slow
def test_deployed_detector_has_the_map_of_the_fake_quantized_one(fake, tmp_path):
    """On the 200 regenerated test images. The fake-quantized detector in float32 is itself
    exact only up to its rounding: its float convs over binary values round differently from
    any other summation order, and an activation within that rounding of its threshold flips
    (measured: 10 of the 200 images), which moves its mAP by about 0.001 (a channels-last
    copy of it alone moves it by 0.0002). The deployed detector computes the popcounts exactly;
    it is held to the fake-quantized detector computed in float64."""
    from autobin.data.mnist_det import write_preset
    from autobin.integrations.mmdet.evaluate import MAP_KEY, evaluate_detector

    config = autobin.zoo.show(NAME, zoo_dir=ZOO)
    recorded = config["metrics"]["map50_mnist_det_small_test"]
    root = write_preset("mnist-det-small", tmp_path / "mnist-det-small")
    fake_map = evaluate_detector(fake, root)[MAP_KEY]
    exact_map = evaluate_detector(_float64_features(fake), root)[MAP_KEY]
    deployed_map = evaluate_detector(autobin.deploy(fake), root)[MAP_KEY]
    assert round(fake_map, 4) == recorded
    assert abs(deployed_map - exact_map) <= 0.002  # measured 0.0011: float32 float convs flip too
    assert abs(deployed_map - fake_map) <= max(0.002, 2 * abs(exact_map - fake_map))


def test_bench_times_a_detector_configs_backbone_and_neck(capsys):
    import json

    from autobin.cli.main import main

    config = str(
        Path(__file__).resolve().parents[2] / "configs/mmdet/ssd128_r18_mnist-det-small.py"
    )
    argv = ["bench", config, "--recipe", "ssd-adabin", "--input-size", "64", "64", "--reps", "1",
            "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arch"] == "ssd128_r18_mnist-det-small.py backbone+neck"
    assert data["input_shape"] == [1, 3, 64, 64] and data["recipe"] == "ssd-adabin"
    assert set(data["total"]) == {"float", "fake", "deployed", "float_best"}
    assert all(v > 0 for v in data["total"].values())
    packed = [n for n, k in data["kinds"].items() if k == "packed"]
    assert len(packed) == 20 and {p.split(".")[0] for p in packed} == {"backbone", "neck"}
    assert data["kinds"]["backbone.stem.0"] == "fp32k"  # float32, in autobin's kernel
    chains = list(data["chain_layers"].values())
    assert len(chains) == 4 and chains[0][-1] == "backbone.layer2.1.conv2"
    assert [c[0] for c in chains[:3]] == [
        "backbone.stem.0",
        *(f"backbone.layer{i}.0.conv1" for i in (3, 4)),
    ]
    assert data["breakdown"]["compiled chains (one C++ call each)"] > 0
    assert data["state_bytes"]["float"] > 8 * data["state_bytes"]["deployed"]
