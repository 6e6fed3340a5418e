"""mnist-det: a VOC-layout detection set of real mnist5k digits (no mmdet needed here)."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autobin.cli import main
from autobin.data import mnist_det
from autobin.data.datasets import _mnist5k_arrays, _seeded_split
from autobin.data.mnist_det import (
    CLASSES,
    SUB_ROOT,
    VOCLayoutError,
    check_voc_root,
    read_manifest,
    write_mnist_det,
)

SMALL = {"trainval": 6, "test": 3}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _objects(xml: Path) -> list[tuple[str, list[int]]]:
    out = []
    for obj in ET.parse(xml).findall("object"):
        box = obj.find("bndbox")
        coords = [int(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((obj.find("name").text, coords))
    return out


def test_layout_annotations_and_split_sources(tmp_path: Path) -> None:
    root = write_mnist_det(tmp_path / "d", **SMALL, seed=3)
    voc = check_voc_root(root)
    assert voc == root / SUB_ROOT
    manifest = read_manifest(root)
    assert manifest["classes"] == list(CLASSES) == [str(i) for i in range(10)]
    images, labels, _ = _mnist5k_arrays()
    pools = {
        "trainval": set(_seeded_split(len(images), 1000, "train").tolist()),
        "test": set(_seeded_split(len(images), 1000, "test").tolist()),
    }
    total = 0
    for split, count in SMALL.items():
        ids = (voc / f"ImageSets/Main/{split}.txt").read_text().split()
        assert len(ids) == count
        for image_id in ids:
            with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as im:
                assert im.size == (300, 300) and im.mode == "RGB"
            objects = _objects(voc / "Annotations" / f"{image_id}.xml")
            sources = manifest["mnist5k_sources"][image_id]
            assert 1 <= len(objects) <= 4 and len(objects) == len(sources)
            # digits of mnist5k's train split only in trainval, test split only in test, and
            # each box is labelled with its digit's real class
            assert set(sources) <= pools[split]
            assert [name for name, _ in objects] == [str(labels[i]) for i in sources]
            for _, (x0, y0, x1, y1) in objects:
                assert 1 <= x0 < x1 <= 300 and 1 <= y0 < y1 <= 300
                assert 8 <= x1 - x0 + 1 <= 128 and 8 <= y1 - y0 + 1 <= 128
            total += len(objects)
    assert total == sum(manifest["objects"].values())


def test_seeded_and_reproducible(tmp_path: Path) -> None:
    a = write_mnist_det(tmp_path / "a", **SMALL, seed=1)
    b = write_mnist_det(tmp_path / "b", **SMALL, seed=1)
    c = write_mnist_det(tmp_path / "c", **SMALL, seed=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_digit_boxes_hold_the_ink(tmp_path: Path) -> None:
    """Inside a box the image differs from its surroundings: the digit is really drawn there."""
    root = write_mnist_det(tmp_path / "d", trainval=2, test=1, seed=0)
    voc = root / SUB_ROOT
    image_id = "trainval_000000"
    pixels = np.asarray(Image.open(voc / "JPEGImages" / f"{image_id}.jpg"), dtype=np.float32)
    for _, (x0, y0, x1, y1) in _objects(voc / "Annotations" / f"{image_id}.xml"):
        crop = pixels[y0 - 1 : y1, x0 - 1 : x1]
        assert crop.std() > 25  # ink on background, not a smooth texture patch


def test_rerun_is_kept_other_args_refused_overwrite_replaces(tmp_path: Path) -> None:
    root = write_mnist_det(tmp_path / "d", **SMALL)
    before = _digest(root)
    stamp = (root / "mnist-det.json").stat().st_mtime_ns
    write_mnist_det(root, **SMALL)
    assert (root / "mnist-det.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite"):
        write_mnist_det(root, trainval=7, test=3)
    assert _digest(root) == before
    write_mnist_det(root, trainval=7, test=3, overwrite=True)
    assert len((root / SUB_ROOT / "ImageSets/Main/trainval.txt").read_text().split()) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folders left


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = mnist_det._compose

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist_det, "_compose", failing)
    with pytest.raises(KeyboardInterrupt):
        write_mnist_det(tmp_path / "d", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_and_not_voc_shaped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_digits"):
        write_mnist_det(tmp_path / "x", min_digits=3, max_digits=2)
    with pytest.raises(ValueError, match="at least one image"):
        write_mnist_det(tmp_path / "x", trainval=0)
    with pytest.raises(VOCLayoutError, match=r"does not exist.*mmdet-data mnist-det"):
        check_voc_root(tmp_path / "missing")
    root = write_mnist_det(tmp_path / "d", **SMALL)
    (root / SUB_ROOT / "ImageSets/Main/test.txt").unlink()
    with pytest.raises(VOCLayoutError, match=r"test\.txt is missing"):
        check_voc_root(root)
    root = write_mnist_det(tmp_path / "e", **SMALL)
    (root / SUB_ROOT / "JPEGImages/trainval_000000.jpg").unlink()
    with pytest.raises(VOCLayoutError, match=r"trainval_000000\.jpg is missing"):
        check_voc_root(root)


def test_cli(tmp_path: Path, capsys) -> None:
    assert main(["mmdet-data", "mnist-det", str(tmp_path / "d"), "--trainval", "3",
                 "--test", "2"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "d" / "mnist-det.json").read_text())["images"] == {
        "trainval": 3,
        "test": 2,
    }
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["mmdet-data", "mnist-det", str(tmp_path / "other")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_small_preset_layout_scales_and_split_sources(tmp_path: Path) -> None:
    """mnist-det-small: 128x128 images, digits scaled to the same share of the canvas, and the
    same split separation as mnist-det."""
    spec = mnist_det.preset("mnist-det-small", trainval=8, test=4)
    assert (spec.image_size, spec.min_scale, spec.max_scale) == (128, 20, 55)
    assert mnist_det.PRESETS["mnist-det-small"].trainval == 8000
    assert mnist_det.PRESETS["mnist-det-small"].test == 200
    big = mnist_det.PRESETS["mnist-det"]
    # the digit scales are the same fraction of the canvas (to the pixel)
    assert abs(spec.min_scale / 128 - big.min_scale / big.image_size) < 1 / 128
    assert abs(spec.max_scale / 128 - big.max_scale / big.image_size) < 1 / 128
    root = mnist_det.write_preset("mnist-det-small", tmp_path / "d", trainval=8, test=4)
    manifest = read_manifest(root)
    assert manifest["spec"] == {**mnist_det.asdict(spec)}
    images, labels, _ = _mnist5k_arrays()
    pools = {
        "trainval": set(_seeded_split(len(images), 1000, "train").tolist()),
        "test": set(_seeded_split(len(images), 1000, "test").tolist()),
    }
    voc = root / SUB_ROOT
    for split, count in (("trainval", 8), ("test", 4)):
        ids = (voc / f"ImageSets/Main/{split}.txt").read_text().split()
        assert len(ids) == count
        for image_id in ids:
            with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as im:
                assert im.size == (128, 128)
            objects = _objects(voc / "Annotations" / f"{image_id}.xml")
            sources = manifest["mnist5k_sources"][image_id]
            assert set(sources) <= pools[split]
            assert [name for name, _ in objects] == [str(labels[i]) for i in sources]
            for _, (x0, y0, x1, y1) in objects:
                assert 1 <= x0 < x1 <= 128 and 1 <= y0 < y1 <= 128
                assert y1 - y0 + 1 <= 55 and x1 - x0 + 1 <= 55


def test_small_preset_test_split_is_deterministic(tmp_path: Path) -> None:
    """The test split of a preset is the same bytes however often it is regenerated."""
    a = mnist_det.write_preset("mnist-det-small", tmp_path / "a", trainval=5, test=3)
    b = mnist_det.write_preset("mnist-det-small", tmp_path / "b", trainval=5, test=3)
    assert _digest(a) == _digest(b)


def test_preset_errors_and_cli(tmp_path: Path, capsys) -> None:
    with pytest.raises(
        mnist_det.DatasetPresetError, match=r"unknown mnist-det preset 'x'.*mnist-det-small"
    ):
        mnist_det.preset("x")
    with pytest.raises(mnist_det.DatasetPresetError, match=r"unknown argument\(s\) \['size'\]"):
        mnist_det.preset("mnist-det-small", size=3)
    argv = ["mmdet-data", "mnist-det-small", str(tmp_path / "d"), "--trainval", "3", "--test", "2"]
    assert main(argv) == 0
    assert "wrote mnist-det-small (3 trainval + 2 test images)" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "d")
    assert manifest["spec"]["image_size"] == 128 and manifest["images"] == {
        "trainval": 3,
        "test": 2,
    }
    # an image size the preset's digit scales do not fit: one line, nothing written
    argv = ["mmdet-data", "mnist-det-small", str(tmp_path / "e"), "--image-size", "96"]
    assert main(argv) == 2
    assert "max_scale <= image_size/2" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_deleted_images_are_detected_and_written_again(tmp_path: Path, capsys) -> None:
    root = write_mnist_det(tmp_path / "d", **SMALL)
    before = _digest(root)
    voc = root / SUB_ROOT
    (voc / "JPEGImages" / "trainval_000002.jpg").unlink()
    (voc / "Annotations" / "test_000001.xml").unlink()
    assert [p.name for p in mnist_det.missing_files(root, read_manifest(root))] == [
        "trainval_000002.jpg", "test_000001.xml"
    ]  # fmt: skip
    argv = ["mmdet-data", "mnist-det", str(root), "--trainval", "6", "--test", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "repaired mnist-det (6 trainval + 3 test images)" in out and "2 missing files" in out
    assert _digest(root) == before  # the same deterministic dataset, complete again
    assert main(argv) == 0
    assert (
        "already holds mnist-det (6 trainval + 3 test images); kept it" in capsys.readouterr().out
    )


def test_temporary_folder_of_a_killed_write_is_removed_by_the_next(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    stale = tmp_path / ".d.tmp-abc123"  # what a write killed mid-way leaves (158 MB at full size)
    (stale / SUB_ROOT / "JPEGImages").mkdir(parents=True)
    (stale / ".owner").write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    live = tmp_path / ".d.tmp-live"  # a write still running in this very process
    live.mkdir()
    (live / ".owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    root = write_mnist_det(tmp_path / "d", **SMALL)
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.tmp-live", "d"]
    assert not (root / ".owner").exists()
