"""The binary SSD committed to the repository's zoo: it loads, and on a freshly regenerated
mnist-det-small test split it reproduces the mAP recorded in its entry."""

from __future__ import annotations

from pathlib import Path

import pytest

import autobin

pytestmark = [pytest.mark.mmdet, pytest.mark.slow]

ZOO = Path(__file__).resolve().parents[2] / "zoo"
NAME = "ssd128_r18.adabin_mnist-det-small"


def test_committed_detector_reproduces_its_recorded_map(tmp_path: Path) -> None:
    from autobin.data.mnist_det import write_preset
    from autobin.integrations.mmdet.evaluate import MAP_KEY, evaluate_detector

    # (importing autobin.integrations.mmdet above registered the zoo's mmdet rebuild)
    autobin.zoo.verify(NAME, zoo_dir=ZOO)
    config = autobin.zoo.show(NAME, zoo_dir=ZOO)
    recorded = config["metrics"]["map50_mnist_det_small_test"]
    teacher = config["metrics"]["teacher_map50_mnist_det_small_test"]
    assert config["recipe"]["name"] == "ssd-adabin" and config["input_size"] == [3, 128, 128]
    detector = autobin.zoo.load(NAME, zoo_dir=ZOO)
    binary = [m for m in detector.modules() if isinstance(m, autobin.nn.BinaryLayer)]
    assert len(binary) > 0 and all(m.frozen for m in binary)
    # the test split is regenerated from the preset (deterministic: the same bytes as the
    # split the entry was evaluated on)
    root = write_preset("mnist-det-small", tmp_path / "mnist-det-small")
    result = evaluate_detector(detector, root)[MAP_KEY]
    assert round(result, 4) == recorded
    assert recorded > 0.0 and 0.0 < teacher <= 1.0
