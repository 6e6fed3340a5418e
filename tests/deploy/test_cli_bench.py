"""``autobin bench`` prints float, fake-quantized and deployed timings side by side."""

from __future__ import annotations

import json

import pytest

from autobin.cli.main import main
from autobin.deploy.build import cpu_has_bf16, cpu_has_vnni


def test_bench_json_has_every_layer_of_all_three_models(capsys):
    argv = ["bench", "resnet18", "--input-size", "32", "32", "--reps", "1", "--num-classes", "10"]
    assert main([*argv, "--json", "--threads", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["arch"] == "resnet18" and data["input_shape"] == [1, 3, 32, 32]
    assert set(data["total"]) == {"float", "fake", "deployed", "float_best"}
    assert all(v > 0 for v in data["total"].values())
    assert data["float_best"] in {"float32 nchw", "float32 channels_last", "bfloat16 channels_last"}
    kinds = data["kinds"]
    packed = [n for n, k in kinds.items() if k == "packed"]
    assert len(packed) == 16 and "layer1.0.conv1" in packed
    # float_parts="auto": int8 stem, bf16 downsample convs where the CPU has them
    assert kinds["conv1"] == ("int8" if cpu_has_vnni() else "float")
    assert kinds["layer2.0.downsample.0"] == ("bf16" if cpu_has_bf16() else "float")
    assert kinds["fc"] == "float"
    breakdown = data["breakdown"]
    assert "glue (Python, graph ops outside modules)" in breakdown
    if cpu_has_vnni() and cpu_has_bf16():
        # one C++ call runs the stem, max pool and every block; its time is in the breakdown
        (chain,) = data["chain_layers"].values()
        assert chain[0] == "conv1" and chain[-1] == "layer4.1.conv2" and len(chain) == 21
        assert breakdown["compiled chains (one C++ call each)"] > 0
    assert set(data["layers"]["layer1.0.conv1"]) == {"float", "fake", "deployed"}
    assert "layer1.0.bn1" not in {n for n, t in data["layers"].items() if "deployed" in t}
    assert data["state_bytes"]["float"] > 8 * data["state_bytes"]["deployed"]


def test_bench_table_and_bad_arguments(capsys):
    argv = ["bench", "resnet18", "--input-size", "32", "32", "--reps", "1", "--num-classes", "10"]
    assert main([*argv, "--kernel", "reference"]) == 0
    out = capsys.readouterr().out
    assert "kernel path reference" in out and "end to end" in out and "glue" in out
    assert "best CPU configuration" in out
    assert main([*argv, "--kernel", "avx9"]) == 2
    assert "unknown kernel path 'avx9'" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bench_refuses_non_positive_sizes_in_one_line(capsys):
    for bad in (["--input-size", "0", "32"], ["--input-size", "32", "-4"], ["--batch", "0"],
                ["--reps", "-1"], ["--threads", "0"], ["--num-classes", "0"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main(["bench", "resnet18", *bad])
        assert info.value.code == 2  # argparse: its usage, then one error line
        assert "must be a positive integer" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.mmdet  # a config file is benchmarked as an mmdet detector
def test_bench_refuses_a_recipe_that_binarizes_nothing_and_a_config_file(capsys, tmp_path):
    recipe = tmp_path / "nothing.yaml"
    recipe.write_text(
        "schema_version: 1\nname: nothing\nrules:\n  - name: all-float\n    match: {type: conv}\n"
        "    action: float\n    reason: keep every conv float\n"
    )
    argv = ["bench", "resnet18", "--input-size", "32", "32", "--reps", "1"]
    assert main([*argv, "--recipe", str(recipe)]) == 2
    assert "binarizes no layer of resnet18" in _one_error_line(capsys)
    # a config file is a detector to time: one that is not a detector is refused in one line
    config = tmp_path / "retinanet_bin.py"
    config.write_text("model = dict(type='RetinaNet')\n")
    assert main(["bench", str(config)]) == 2
    assert "has no backbone, so it is not an mmdet detector" in _one_error_line(capsys)
    assert main(["bench", str(config), "--num-classes", "3"]) == 2
    assert "--num-classes and --in-chans are timm arguments" in _one_error_line(capsys)
