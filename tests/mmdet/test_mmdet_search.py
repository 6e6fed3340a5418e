"""autobin.search on the small shipped detectors (configs/mmdet/) at 64x64: the detector's
distillation losses as the search's loss, the written recipe taken by binarize_detector and
autobin mmdet-config, and the CLI on an mmdet config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from mmdet_helpers import build_float

import autobin
from autobin.cli import main

pytestmark = pytest.mark.mmdet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mmdet"
SSD = CONFIGS / "ssd128_r18_mnist-det-small.py"
RETINANET = CONFIGS / "retinanet128_r18_mnist-det-small.py"
CALIBRATION = 8


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """mnist-det-small at 64x64 (digits scaled to fit): 12 trainval, 2 test images."""
    from autobin.data.mnist_det import write_preset

    return write_preset("mnist-det-small", tmp_path_factory.mktemp("d") / "m", trainval=12,
                        test=2, image_size=64, min_scale=10, max_scale=28)  # fmt: skip


def settled(config: Path, root: Path):
    """The config's float detector (on the root's classes) with BatchNorm statistics of the
    calibration images, as a trained detector's would be settled: with them the all-float
    configuration reproduces it exactly."""
    from autobin.integrations.mmdet import DetectorObjective
    from autobin.search.calibration import calibrate

    detector = build_float(str(config))
    calibrate(detector, DetectorObjective().images(detector, root, CALIBRATION, 0))
    return detector.eval()


def float_convs(detector) -> set[str]:
    from autobin.nn import BinaryLayer

    return {n for n, m in detector.named_modules()
            if isinstance(m, torch.nn.Conv2d) and not isinstance(m, BinaryLayer)}  # fmt: skip


def test_detectors_get_the_distillation_objective(root) -> None:
    from autobin.integrations.mmdet import DetectorObjective
    from autobin.search.objective import ClassifierObjective, objective_for

    detector = build_float(str(SSD))
    objective = objective_for(detector)
    assert isinstance(objective, DetectorObjective) and objective.loss_name == "distill"
    assert isinstance(objective_for(torch.nn.Linear(2, 2)), ClassifierObjective)


def test_calibration_images_from_a_root_a_dataset_and_a_loader(root) -> None:
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from autobin.integrations.mmdet import DetectorObjective
    from autobin.integrations.mmdet.search import calibration_dataset

    detector = build_float(str(SSD))
    objective = DetectorObjective()
    images = objective.images(detector, root, CALIBRATION, 0)
    assert images.shape == (CALIBRATION, 3, 64, 64) and images.dtype == torch.float32
    assert torch.equal(images, objective.images(detector, str(root), CALIBRATION, 0))
    assert not torch.equal(images, objective.images(detector, root, CALIBRATION, 1))
    # the detector's own preprocessing: (BGR -> RGB, - mean) / std of the 8-bit JPEG pixels
    preprocessor = detector.data_preprocessor
    pixels = images * preprocessor.std + preprocessor.mean
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    # every trainval image once, whichever way the data comes: the same set of images
    dataset = calibration_dataset(root, (64, 64))
    loader = DataLoader(dataset, batch_size=5, collate_fn=pseudo_collate)
    everything = [objective.images(detector, d, 100, 0) for d in (root, dataset, loader)]

    def as_set(batch):
        return batch[torch.argsort(batch.flatten(1).sum(1))]

    assert everything[0].shape[0] == len(dataset) == 12
    assert torch.equal(as_set(everything[0]), as_set(everything[1]))
    assert torch.equal(as_set(everything[0]), as_set(everything[2]))


def test_objective_loss_is_zero_for_the_float_detector_and_sees_the_boxes(root) -> None:
    from autobin.integrations.mmdet import DetectorObjective

    detector = build_float(str(SSD))
    objective = DetectorObjective()
    images = objective.images(detector, root, 4, 0)
    reference = objective.outputs(detector, images, 2)
    assert [f.shape[0] for f in reference.features] == [4] * 4  # four SSD levels, all images
    assert reference.channels == 11 and not reference.sigmoid  # softmax over 10 digits + bg
    assert objective.loss(objective.outputs(detector, images, 4), reference) == 0.0
    changed = copy.deepcopy(detector)
    with torch.no_grad():
        weight = changed.bbox_head.reg_convs[0][1].weight  # boxes only: features, scores equal
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    outputs = objective.outputs(changed, images, 4)
    assert all(torch.equal(a, b) for a, b in zip(outputs.scores, reference.scores, strict=True))
    assert objective.loss(outputs, reference) > 0


@pytest.mark.slow
def test_search_ssd_writes_a_recipe_binarize_detector_takes(root, tmp_path) -> None:
    from autobin.integrations.mmdet import binarize_detector, explain_detector

    detector = settled(SSD, root)
    before = copy.deepcopy(detector.state_dict())
    base = explain_detector(detector, "det-adabin", input_size=(64, 64)).totals
    limit = base["flops"] // 2
    out = tmp_path / "ssd-searched.yaml"
    result = autobin.search(detector, root, "det-adabin", max_float_macs=limit,
                            calibration_size=CALIBRATION, output=out, progress=False)  # fmt: skip
    assert result.all_float_loss == pytest.approx(0.0, abs=1e-6)
    assert result.all_binary_loss > result.searched.measured_loss > 0
    assert len(result.layers) == 40  # every conv of the SSD is decided by a det-adabin rule
    # the box branch is measured: binarizing any of its convs alone costs something
    reg = [s for s in result.layers if s.candidate.name.startswith("bbox_head.reg_convs")]
    assert len(reg) == 8 and all(s.damage > 0 for s in reg)
    # the written recipe: extends det-adabin, one commented rule per decided layer
    text = out.read_text()
    assert yaml.safe_load(text)["extends"] == "det-adabin"
    assert text.count("distill only-binary") == len(yaml.safe_load(text)["rules"])
    binary = binarize_detector(detector, str(out), input_size=(64, 64))
    assert float_convs(binary) == set(result.float_layers)
    assert autobin.info(binary).report.totals["flops"] == result.totals["flops"] <= limit
    assert (out.parent / "ssd-searched.search" / "pareto.png").is_file()
    after = detector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_cli_search_on_a_config_then_mmdet_config(root, tmp_path, capsys) -> None:
    from mmengine.config import Config

    from autobin.integrations.mmdet import MODELS

    teacher = tmp_path / "float.pth"
    torch.save({"state_dict": settled(RETINANET, root).state_dict()}, teacher)
    data = ["--data", "mnist-det-small", "--data-root", str(root)]
    out = tmp_path / "r.yaml"
    argv = ["search", str(RETINANET), *data, "--teacher", str(teacher), "--input-size", "64", "64",
            "--min-binary-share", "0.97", "--calibration-size", "4", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "autobin mmdet-config" in printed and "binary share of MACs" in printed
    recipe = yaml.safe_load(out.read_text())
    assert recipe["extends"] == "det-adabin"
    chosen = [r["match"]["name"][0] for r in recipe["rules"] if r["action"] == "float"]
    config = tmp_path / "b.py"
    argv = ["mmdet-config", str(RETINANET), "--recipe", str(out), "--teacher", str(teacher),
            *data, "-o", str(config)]  # fmt: skip
    assert main(argv) == 0
    student = MODELS.build(Config.fromfile(str(config)).model)
    searched = {n for n in float_convs(student.detector)}
    report = autobin.info(student).report
    assert report.totals["binary_mac_share"] >= 0.97
    assert set(chosen) <= searched
    assert searched == {e.name for e in report.layers("float", kind="conv")}


def test_cli_search_on_a_config_refuses_what_cannot_apply(root, tmp_path, capsys) -> None:
    out = tmp_path / "r.yaml"
    common = [str(SSD), "--max-float-macs", "1M", "-o", str(out)]
    cases = {
        "needs --teacher": ["--data", str(root)],
        "needs --data": ["--teacher", "x.pth"],
        "--teacher-epochs trains a timm": ["--data", str(root), "--teacher-epochs", "2"],
        "--num-classes": ["--data", str(root), "--num-classes", "3"],
        "does not exist": ["--data", str(root), "--teacher", str(tmp_path / "none.pth")],
    }
    for message, extra in cases.items():
        assert main(["search", *common, *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert "leave teacher unset" not in err  # the search needs a trained float detector
        assert not out.exists()
