"""``autobin mmdet-publish`` / ``publish_detector``: a trained binarized detector from its config
and checkpoint into the zoo, loaded back with identical outputs; bad input is one line and
writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdet_helpers import FAST

from autobin.cli import main

pytestmark = [pytest.mark.mmdet, pytest.mark.slow]

SSD = Path(__file__).resolve().parents[2] / "configs" / "mmdet" / "ssd128_r18_mnist-det-small.py"
ONE_ITER = [
    "train_cfg.max_iters=1",
    "train_cfg.val_interval=5",
    "default_hooks.checkpoint.interval=1",
    *FAST,
]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A float and a binarized 128x128 SSD, each trained for one iteration."""
    from autobin.data.mnist_det import write_preset
    from autobin.integrations.mmdet import load_config

    tmp = tmp_path_factory.mktemp("pub")
    root = write_preset("mnist-det-small", tmp / "data", trainval=2, test=2)
    data = ["--data", "mnist-det-small", "--data-root", str(root)]
    paths = {"data": root, "float_cfg": tmp / "float.py", "binary_cfg": tmp / "binary.py"}
    assert main(["mmdet-config", str(SSD), "--float", *data, "-o", str(paths["float_cfg"])]) == 0
    argv = [
        "mmdet-config",
        str(SSD),
        "--recipe",
        "ssd-adabin",
        "--no-distill",
        *data,
        "-o",
        str(paths["binary_cfg"]),
    ]
    assert main(argv) == 0
    # --no-distill really turns distillation off (it used to write distill={}, i.e. on)
    assert load_config(paths["binary_cfg"]).model.distill is None
    for kind in ("float", "binary"):
        work = tmp / kind
        argv = [
            "mmdet-train",
            str(paths[f"{kind}_cfg"]),
            "--work-dir",
            str(work),
            "--cfg-options",
            *ONE_ITER,
        ]
        assert main(argv) == 0
        paths[f"{kind}_ckpt"] = work / "iter_1.pth"
    return paths


def test_publish_and_load_back_identical(trained, tmp_path: Path, capsys) -> None:
    import torch
    from mmengine.dataset import pseudo_collate

    from autobin import zoo
    from autobin.integrations.mmdet import publish_detector
    from autobin.integrations.mmdet.evaluate import test_pipeline, voc_dataset
    from autobin.integrations.mmdet.publish import load_student

    zoo_dir = tmp_path / "zoo"
    argv = [
        "mmdet-publish",
        str(trained["binary_cfg"]),
        str(trained["binary_ckpt"]),
        "ssd-a",
        "--zoo-dir",
        str(zoo_dir),
        "--metrics",
        '{"map50": 0.5}',
    ]
    assert main(argv) == 0
    assert f"published ssd-a to {zoo_dir / 'ssd-a'}" in capsys.readouterr().out
    config = zoo.show("ssd-a", zoo_dir=zoo_dir)
    assert config["architecture"]["library"] == "mmdet"
    assert config["input_size"] == [3, 128, 128] and config["metrics"] == {"map50": 0.5}
    assert config["recipe"]["name"] == "ssd-adabin"

    student = load_student(trained["binary_cfg"], trained["binary_ckpt"])
    loaded = zoo.load("ssd-a", zoo_dir=zoo_dir)
    dataset = voc_dataset(trained["data"], "test", test_pipeline((128, 128)))
    batch = loaded.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), False)
    with torch.no_grad():
        a, b = student._forward(batch["inputs"]), loaded._forward(batch["inputs"])
    pairs = [(x, y) for la, lb in zip(a, b) for x, y in zip(la, lb)]
    assert len(pairs) == 8 and all(torch.equal(x, y) for x, y in pairs)

    # the Python function gives the same entry (another name)
    path = publish_detector(trained["binary_cfg"], trained["binary_ckpt"], "ssd-b", zoo_dir=zoo_dir)
    assert path == zoo_dir / "ssd-b"
    assert [e["name"] for e in zoo.list_models(zoo_dir=zoo_dir)] == ["ssd-a", "ssd-b"]


def _refused(argv: list[str], capsys, zoo_dir: Path) -> str:
    before = _tree(zoo_dir)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("autobin mmdet-publish: error: ")
    assert _tree(zoo_dir) == before
    return err


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path: Path, capsys) -> None:
    zoo_dir = tmp_path / "zoo"
    binary_cfg, binary_ckpt = str(trained["binary_cfg"]), str(trained["binary_ckpt"])
    # a float detector's config
    err = _refused(
        [
            "mmdet-publish",
            str(trained["float_cfg"]),
            str(trained["float_ckpt"]),
            "x",
            "--zoo-dir",
            str(zoo_dir),
        ],
        capsys,
        zoo_dir,
    )
    assert "describes a float detector (SingleStageDetector)" in err
    assert not zoo_dir.exists()
    # a float detector's checkpoint under the binarized config: it does not fit
    err = _refused(
        ["mmdet-publish", binary_cfg, str(trained["float_ckpt"]), "x", "--zoo-dir", str(zoo_dir)],
        capsys,
        zoo_dir,
    )
    assert "does not fit" in err and "float detector's checkpoint" in err
    assert not zoo_dir.exists()
    # a name that exists: the entry is kept as it was
    assert main(["mmdet-publish", binary_cfg, binary_ckpt, "taken", "--zoo-dir", str(zoo_dir)]) == 0
    capsys.readouterr()
    entry = {p: p.read_bytes() for p in (zoo_dir / "taken").iterdir()}
    err = _refused(
        ["mmdet-publish", binary_cfg, binary_ckpt, "taken", "--zoo-dir", str(zoo_dir)],
        capsys,
        zoo_dir,
    )
    assert "already has an entry named 'taken'" in err
    assert {p: p.read_bytes() for p in (zoo_dir / "taken").iterdir()} == entry
    # a checkpoint that does not exist
    err = _refused(
        ["mmdet-publish", binary_cfg, str(tmp_path / "none.pth"), "y", "--zoo-dir", str(zoo_dir)],
        capsys,
        zoo_dir,
    )
    assert "none.pth does not exist" in err
