"""Teachers, bad input, offline fixes, explain on a config, and the zoo for detectors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from mmdet_helpers import SSD_VOC

from autobin.cli import main
from autobin.integrations.mmdet import (
    BinarizedDetector,
    DetectorConfigError,
    TeacherCheckpointError,
    binarize_detector,
    fix_predict,
    strip_pretrained,
)
from autobin.integrations.mmdet.config import detector_config, load_config

pytestmark = pytest.mark.mmdet


@pytest.fixture(scope="module")
def ssd_cfg() -> dict:
    cfg = detector_config(load_config(SSD_VOC))
    cfg["bbox_head"]["num_classes"] = 10
    return cfg


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_strip_pretrained_warns_and_keeps_local_files(tmp_path: Path, ssd_cfg) -> None:
    url = {"type": "Pretrained", "checkpoint": "https://x/y.pth"}
    cfg = {
        "backbone": {"init_cfg": {"type": "Pretrained", "checkpoint": "open-mmlab://vgg"}},
        "neck": {"init_cfg": [{"type": "Xavier"}, url]},
    }
    local = tmp_path / "w.pth"
    local.write_bytes(b"")
    cfg["head"] = {"init_cfg": {"type": "Pretrained", "checkpoint": str(local)}}
    removed = strip_pretrained(cfg)
    assert len(removed) == 2 and "open-mmlab://vgg" in removed[0]
    assert cfg["backbone"]["init_cfg"] is None
    assert cfg["neck"]["init_cfg"] == [{"type": "Xavier"}]
    assert cfg["head"]["init_cfg"]["checkpoint"] == str(local)
    from autobin.integrations.mmdet import build_float_detector

    # a config file is validated and stripped once, when it is loaded ...
    with pytest.warns(UserWarning, match=r"no network.*open-mmlab://vgg16_caffe"):
        loaded = detector_config(load_config(SSD_VOC))
    assert loaded["backbone"]["init_cfg"] is None
    # ... and a model dict handed to the builder (mmengine's registry, Python) at the build
    pretrained = {"type": "Pretrained", "checkpoint": "open-mmlab://vgg16_caffe"}
    with pytest.warns(UserWarning, match=r"no network.*open-mmlab://vgg16_caffe"):
        build_float_detector(dict(ssd_cfg, backbone=dict(ssd_cfg["backbone"], init_cfg=pretrained)))


def test_ssd_predict_bug_is_handled_on_the_instance(ssd_float) -> None:
    from mmdet.models.dense_heads import SSDHead
    from mmdet.structures import DetDataSample

    assert "loss_cls" not in vars(SSDHead)  # mmdet itself is not changed
    head = ssd_float.bbox_head
    assert head.loss_cls is None and fix_predict(ssd_float) == 0
    sample = DetDataSample(metainfo={"img_shape": (300, 300), "ori_shape": (300, 300),
                                     "scale_factor": (1.0, 1.0)})  # fmt: skip
    with torch.no_grad():
        result = ssd_float.eval().predict(torch.randn(1, 3, 300, 300), [sample])
    assert result[0].pred_instances.bboxes.shape[1] == 4


def test_teacher_from_checkpoint_and_student_starts_from_it(tmp_path, ssd_float, ssd_cfg):
    path = tmp_path / "float.pth"
    torch.save({"state_dict": ssd_float.state_dict(), "meta": {"epoch": 3}}, path)
    model = _quiet(BinarizedDetector, ssd_cfg, "ssd300-adabin", teacher={"checkpoint": str(path)})
    teacher = model.teacher
    for key, value in ssd_float.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
    # the student was binarized from the checkpoint's float weights
    assert torch.equal(
        model.detector.backbone.features[0].weight, ssd_float.backbone.features[0].weight
    )
    assert torch.equal(
        model.detector.backbone.features[2].weight, ssd_float.backbone.features[2].weight
    )
    model.train()
    assert model.training and not teacher.training


def test_teacher_checkpoint_that_does_not_fit(tmp_path, ssd_cfg) -> None:
    other = dict(ssd_cfg, bbox_head=dict(ssd_cfg["bbox_head"], num_classes=3))
    from mmdet_helpers import build_float

    small = build_float(SSD_VOC, bbox_head={"num_classes": 3})
    assert other["bbox_head"]["num_classes"] == 3
    path = tmp_path / "three_classes.pth"
    torch.save(small.state_dict(), path)
    with pytest.raises(TeacherCheckpointError, match=r"three_classes\.pth does not fit.*same"):
        _quiet(BinarizedDetector, ssd_cfg, "ssd300-adabin", teacher=str(path))
    with pytest.raises(TeacherCheckpointError, match=r"missing\.pth does not exist"):
        _quiet(BinarizedDetector, ssd_cfg, "ssd300-adabin", teacher=str(tmp_path / "missing.pth"))


def test_configs_without_a_detector(tmp_path: Path, capsys) -> None:
    no_model = tmp_path / "no_model.py"
    no_model.write_text("train_cfg = dict(max_epochs=1)\n")
    classifier = tmp_path / "classifier.py"
    classifier.write_text("model = dict(type='ImageClassifier', head=dict(type='X'))\n")
    out = tmp_path / "out.py"
    for config in (no_model, classifier):
        with pytest.raises(DetectorConfigError, match=config.name):
            load_config(config)
        assert main(["mmdet-config", str(config), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert config.name in err and "mmdet::pascal_voc/ssd300_voc0712.py" in err
    assert not out.exists()
    assert main(["mmdet-config", str(tmp_path / "absent.py"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()


def test_data_root_not_voc_shaped(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.py"
    argv = ["mmdet-config", SSD_VOC, "--data", "mnist-det", "--data-root", str(empty), "-o",
            str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not VOC-shaped" in err and f"autobin mmdet-data mnist-det {empty}" in err
    assert not out.exists()


def test_train_on_a_missing_data_root_writes_nothing(tmp_path: Path, mnist_det_root, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(mnist_det_root, root)
    cfg = tmp_path / "cfg.py"
    argv = ["mmdet-config", SSD_VOC, "--data", "mnist-det", "--data-root", str(root), "-o",
            str(cfg)]  # fmt: skip
    assert main(argv) == 0
    shutil.rmtree(root / "VOCdevkit")
    work = tmp_path / "work"
    assert main(["mmdet-train", str(cfg), "--work-dir", str(work)]) == 2
    assert "not VOC-shaped" in capsys.readouterr().err
    assert not work.exists()


def test_explain_cli_on_an_mmdet_config(capsys) -> None:
    assert main(["explain", SSD_VOC, "--recipe", "ssd300-adabin"]) == 0
    out = capsys.readouterr().out
    assert "autobin report: SingleStageDetector with recipe 'ssd300-adabin'" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "binarize (adabin)" in lines["backbone.features.2"]
    assert "float" in lines["backbone.features.0"] and "stem" in lines["backbone.features.0"]
    assert "head-predictions" in lines["bbox_head.cls_convs.0.0"]
    assert "binary layers: 22  float layers: 13" in out


@pytest.mark.slow
def test_zoo_publish_load_gives_identical_outputs(tmp_path: Path, ssd_float) -> None:
    from autobin import zoo

    binary = binarize_detector(ssd_float, "ssd300-adabin")
    with torch.no_grad():  # move the AdaBin parameters off their init so the check means more
        for p in binary.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    binary.eval()
    path = zoo.publish(binary, "ssd300-adabin-test", zoo_dir=tmp_path, metrics={"mAP": 0.0})
    config = zoo.show("ssd300-adabin-test", zoo_dir=tmp_path)
    assert config["architecture"]["library"] == "mmdet"
    from mmengine.config import Config

    embedded = Config.fromstring(config["architecture"]["config"], ".py").model
    assert embedded.bbox_head.type == "SSDHead" and embedded.bbox_head.num_classes == 10
    assert config["input_size"] == [3, 300, 300]
    weights = path / "model.safetensors"
    assert weights.stat().st_size < 0.25 * config["weights"]["float32_bytes"]
    loaded = zoo.load("ssd300-adabin-test", zoo_dir=tmp_path)
    assert type(loaded) is type(binary)
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        ours, theirs = binary(x), loaded(x)
    for a, b in zip([*ours[0], *ours[1]], [*theirs[0], *theirs[1]]):
        assert torch.equal(a, b)


def test_train_with_a_teacher_that_does_not_fit_writes_nothing(tmp_path, mnist_det_root, capsys):
    bad = tmp_path / "not_this_detector.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, bad)
    cfg = tmp_path / "cfg.py"
    argv = ["mmdet-config", SSD_VOC, "--recipe", "ssd300-adabin", "--teacher", str(bad),
            "--data", "mnist-det", "--data-root", str(mnist_det_root), "-o", str(cfg)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    work = tmp_path / "work"
    assert main(["mmdet-train", str(cfg), "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert "not_this_detector.pth does not fit the detector" in err
    assert not work.exists()  # the Runner's logs and dumped config were removed again


# --------------------------------------------------------------------------- hurried users
@pytest.fixture(scope="module")
def binarized_ssd(tmp_path_factory, mnist_det_root) -> Path:
    from mmdet_helpers import write_binarized_ssd_config

    return write_binarized_ssd_config(tmp_path_factory.mktemp("cfg") / "ssd.py", mnist_det_root)


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("epochs", ["0", "-2"])
def test_train_with_no_epochs_is_refused(tmp_path, binarized_ssd, capsys, epochs) -> None:
    work = tmp_path / "work"
    argv = ["mmdet-train", str(binarized_ssd), "--work-dir", str(work), "--cfg-options",
            f"train_cfg.max_epochs={epochs}"]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys)
    assert f"train_cfg.max_epochs is {epochs}; training needs a positive number of epochs" in line
    assert not work.exists()


def test_resume_with_nothing_to_resume_is_refused(tmp_path, binarized_ssd, capsys) -> None:
    work = tmp_path / "work"
    assert main(["mmdet-train", str(binarized_ssd), "--work-dir", str(work), "--resume"]) == 2
    line = _error_line(capsys)
    assert f"--resume: {work} holds no checkpoint to resume" in line and "drop --resume" in line
    assert not work.exists()


def _checkpoint(tmp_path: Path, kind: str, ssd_float) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "float-ssd":  # the float detector's weights on the binarized config
        torch.save({"state_dict": ssd_float.state_dict(), "meta": {}}, path)
    elif kind == "classifier":
        import timm

        torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), path)
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"state_dict": ssd_float.state_dict()}, path)
        path.write_bytes(path.read_bytes()[:100_000])
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("float-ssd", r"float-ssd.pth does not fit the config's model: \d+ of its \d+ weights"),
        ("classifier", r"classifier.pth does not fit the config's model"),
        ("garbage", r"cannot read checkpoint .*garbage.pth: .*damaged or truncated"),
        ("empty", r"checkpoint .*empty.pth is empty \(0 bytes\)"),
        ("truncated", r"cannot read checkpoint .*truncated.pth: .*damaged or truncated"),
    ],
)
def test_test_with_a_checkpoint_of_another_model_or_a_damaged_one_is_refused(
    tmp_path, binarized_ssd, ssd_float, capsys, kind, message
) -> None:
    import re

    path = _checkpoint(tmp_path, kind, ssd_float)
    work = tmp_path / "test"
    argv = ["mmdet-test", str(binarized_ssd), str(path), "--work-dir", str(work),
            "--cfg-options", "test_dataloader.num_workers=0"]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys)
    assert re.search(message, line), line
    assert not work.exists()  # nothing evaluated, no logs left


@pytest.mark.parametrize(
    ("distill", "message"),
    [
        ('{"feature_wieght": 1}', r"distill has unknown keys \['feature_wieght'\]"),
        ('{"cls_weight": -1}', r"distill.cls_weight must be a number >= 0, got -1"),
    ],
)
def test_config_distill_values_are_checked_when_written(tmp_path, capsys, distill, message):
    import re

    out = tmp_path / "cfg.py"
    assert main(["mmdet-config", SSD_VOC, "--distill", distill, "-o", str(out)]) == 2
    assert re.search(message, _error_line(capsys)) and not out.exists()


def test_no_distill_builds_a_detector_without_a_teacher(tmp_path) -> None:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    out = tmp_path / "cfg.py"
    assert main(["mmdet-config", SSD_VOC, "--recipe", "ssd300-adabin", "--no-distill", "-o",
                 str(out)]) == 0  # fmt: skip
    cfg = Config.fromfile(str(out))
    init_default_scope("mmdet")
    model = _quiet(MODELS.build, cfg.model)
    assert model.teacher is None and model.distill_config is None


def test_a_misspelt_cfg_option_is_refused_and_a_new_key_allowed(tmp_path, binarized_ssd,
                                                                 capsys) -> None:  # fmt: skip
    from autobin.integrations.mmdet.runner import prepare_config

    work = tmp_path / "work"
    argv = ["mmdet-train", str(binarized_ssd), "--work-dir", str(work), "--cfg-options",
            "train_cfg.max_epoch=2"]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "--cfg-options train_cfg.max_epoch: the config has no 'train_cfg.max_epoch'" in line
    assert "did you mean 'max_epochs'?" in line and not work.exists()
    cfg = prepare_config(binarized_ssd, cfg_options={"train_cfg.val_begin": 2,
                                                     "train_cfg.max_epochs": 3})  # fmt: skip
    assert cfg.train_cfg.val_begin == 2 and cfg.train_cfg.max_epochs == 3
