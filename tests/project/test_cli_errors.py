"""Every CLI failure is one line naming the problem and the fix, with a non-zero exit."""

from __future__ import annotations

import pytest
import timm
import torch

import autobin
from autobin.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse refuses bad values before any work
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    # argparse prints its usage line first; the error itself is always one line
    assert len([line for line in lines if "error:" in line]) == 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def corrupt_zoo(tmp_path_factory):
    zoo = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=3, in_chans=1)
    bnn = autobin.binarize(model, example_inputs=torch.randn(1, 1, 32, 32))
    autobin.zoo.publish(bnn, "r18", zoo_dir=zoo)
    weights = zoo / "r18" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    return zoo


def test_zoo_verify_on_a_corrupt_entry(capsys, corrupt_zoo):
    code, _, err = _run(capsys, "zoo", "--zoo-dir", str(corrupt_zoo), "verify", "r18")
    line = _one_error_line(err)
    assert code == 2 and line.startswith("autobin zoo: error:")
    assert "model.safetensors: sha256 mismatch" in line and "corrupt" in line


def test_unknown_zoo_name(capsys, corrupt_zoo):
    for command in ("show", "verify"):
        code, _, err = _run(capsys, "zoo", "--zoo-dir", str(corrupt_zoo), command, "r19")
        line = _one_error_line(err)
        assert code == 2 and "no model 'r19'" in line and "autobin zoo list" in line


def test_zoo_dir_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "zoo.txt"
    path.write_text("")
    code, _, err = _run(capsys, "zoo", "--zoo-dir", str(path), "list")
    assert code == 2 and "is a file, not a directory" in _one_error_line(err)


def test_reindex_after_the_index_is_deleted(capsys, tmp_path):
    zoo = tmp_path / "zoo"
    torch.manual_seed(0)
    bnn = autobin.binarize(timm.create_model("resnet18", num_classes=3))
    autobin.zoo.publish(bnn, "r18", zoo_dir=zoo)
    (zoo / "index.json").unlink()
    code, out, err = _run(capsys, "zoo", "--zoo-dir", str(zoo), "show", "r18")
    assert code == 2 and "reindex" in _one_error_line(err)
    code, out, _ = _run(capsys, "zoo", "--zoo-dir", str(zoo), "reindex")
    assert code == 0 and "indexed 1 entries: r18" in out
    code, out, _ = _run(capsys, "zoo", "--zoo-dir", str(zoo), "verify", "r18")
    assert code == 0 and "all files match" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in-chans", "0"], "argument --in-chans: 0 must be a positive integer"),
        (["--in-chans", "-3"], "argument --in-chans: -3 must be a positive integer"),
        (["--in-chans", "one"], "argument --in-chans: 'one' is not an integer"),
        (["--input-size", "0", "32"], "argument --input-size: 0 must be a positive integer"),
        (["--num-classes", "1.5"], "argument --num-classes: '1.5' is not an integer"),
    ],
)
def test_invalid_numbers_are_refused_before_any_work(capsys, tmp_path, args, message):
    code, _, err = _run(capsys, "binarize", "resnet18", *args, "-o", str(tmp_path / "b.pt"))
    assert code == 2 and message in _one_error_line(err)
    assert not (tmp_path / "b.pt").exists()


def test_output_that_is_a_directory_or_under_a_file(capsys, tmp_path):
    code, _, err = _run(capsys, "binarize", "resnet18", "-o", str(tmp_path))
    assert code == 2 and "is a directory; give a file name" in _one_error_line(err)
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    code, _, err = _run(capsys, "binarize", "resnet18", "-o", str(blocker / "sub" / "b.pt"))
    assert code == 2 and f"{blocker} is a file, not a directory" in _one_error_line(err)
    code, _, err = _run(capsys, "train", "resnet18", "-o", str(blocker / "run"))
    assert code == 2 and "is a file, not a directory" in _one_error_line(err)
    assert blocker.read_text() == "keep me"


def test_binarize_writes_a_file_autobin_load_reads(capsys, tmp_path):
    out = tmp_path / "bnn.pt"
    code, text, err = _run(
        capsys, "binarize", "resnet18", "--in-chans", "1", "--num-classes", "3",
        "--input-size", "32", "32", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert f"autobin.load('{out}')" in text
    model = autobin.load(out)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)

    # an existing file is refused before any work, as train / publish refuse; --overwrite replaces
    written = out.read_bytes()
    code, _, err = _run(capsys, "binarize", "resnet18", "--num-classes", "5", "-o", str(out))
    line = _one_error_line(err)
    assert code == 2 and f"{out} already exists; nothing was written" in line
    assert "--overwrite" in line and out.read_bytes() == written
    code, _, err = _run(capsys, "binarize", "resnet18", "--in-chans", "1", "--num-classes", "5",
                        "--input-size", "32", "32", "-o", str(out), "--overwrite")  # fmt: skip
    assert code == 0, err
    assert autobin.load(out)(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        autobin.zoo.save_file(model, out)


def test_input_size_the_model_cannot_take(capsys, tmp_path):
    code, _, err = _run(capsys, "explain", "vit_tiny_patch16_224", "--input-size", "40", "40")
    line = _one_error_line(err)
    assert code == 2 and "example forward pass failed" in line and "--input-size" in line


def test_unknown_recipe_is_one_line(capsys):
    code, _, err = _run(capsys, "explain", "resnet18", "--recipe", "adabn")
    line = _one_error_line(err)
    assert code == 2 and "unknown recipe 'adabn'" in line and "did you mean 'adabin'" in line
    assert "fix:" in line  # the recipe error's lines joined into one


def test_an_unexpected_error_is_one_line_too(capsys, monkeypatch):
    import importlib

    cli = importlib.import_module("autobin.cli.main")  # the module (the package exports main)

    def broken(_args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "cmd_recipes", broken)
    code, _, err = _run(capsys, "recipes")
    line = _one_error_line(err)
    assert code == 3 and "internal error: ZeroDivisionError" in line and "AUTOBIN_DEBUG=1" in line


SSD = "mmdet::pascal_voc/ssd300_voc0712.py"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", SSD, "--in-chans", "1"], "--in-chans cannot apply to an mmdet config"),
        (["explain", SSD, "--num-classes", "3", "--in-chans", "1"],
         "--num-classes and --in-chans cannot apply to an mmdet config"),
        (["binarize", "my_detector.py", "-o", "OUT"], "autobin mmdet-config CONFIG --recipe"),
        (["mmdet-config", SSD, "--float", "--recipe", "ssd300-adabin", "-o", "OUT"],
         "--float keeps the detector float, so --recipe cannot apply; drop it"),
        (["mmdet-config", SSD, "--float", "--teacher", "t.pth", "--no-distill", "-o", "OUT"],
         "so --teacher, --no-distill cannot apply; drop them"),
        (["mmdet-config", SSD, "--distill", "{feature_weight: 1}", "-o", "OUT"],
         "--distill takes a JSON object such as '{\"feature_weight\": 1, "),
        (["mmdet-config", SSD, "--distill", "[1, 2]", "-o", "OUT"], "got a list"),
        (["mmdet-config", SSD, "--distill", "{}", "--no-distill", "-o", "OUT"],
         "--no-distill and --distill contradict each other"),
    ],
    ids=["explain-in-chans", "explain-two-flags", "binarize-config", "float-recipe",
         "float-teacher", "distill-not-json", "distill-list", "distill-and-no-distill"],
)  # fmt: skip
def test_options_that_cannot_apply_to_an_mmdet_config_are_refused(capsys, tmp_path, argv, message):
    argv = [str(tmp_path / "out.py") if a == "OUT" else a for a in argv]
    code, _, err = _run(capsys, *argv)
    line = _one_error_line(err)
    assert code == 2 and message in line, line
    assert not (tmp_path / "out.py").exists()
