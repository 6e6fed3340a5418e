"""The searched recipe on a timm resnet18 through the command line: search, explain, train, zoo."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import autobin
from autobin.cli import main
from autobin.nn import BinaryLayer


@pytest.mark.slow
def test_cli_search_then_explain_train_and_zoo_take_the_recipe(tmp_path, capsys):
    recipe = tmp_path / "my-recipe.yaml"
    model_args = ["--in-chans", "1", "--num-classes", "10"]
    code = main(["search", "resnet18", *model_args, "--data", "mnist5k[:64]",
                 "--teacher-epochs", "1", "--calibration-size", "32", "--max-float-macs", "3M",
                 "-o", str(recipe)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"wrote {recipe}" in out and "budget max_float_macs <= 3,000,000" in out
    report = json.loads((tmp_path / "my-recipe.search" / "search.json").read_text())
    chosen = report["float_layers"]
    assert report["totals"]["flops"] <= 3_000_000
    assert len(report["layers"]) == 21  # 20 convs and the classifier of resnet18
    assert yaml.safe_load(recipe.read_text())["extends"] == "adabin"

    assert main(["explain", "resnet18", *model_args, "--input-size", "28", "28",
                 "--recipe", str(recipe), "--json"]) == 0  # fmt: skip
    explained = json.loads(capsys.readouterr().out)
    floats = [r["name"] for r in explained["layers"]
              if r["kind"] in ("conv", "linear") and r["decision"] == "float"]  # fmt: skip
    assert floats == chosen

    teacher = tmp_path / "my-recipe.search" / "teacher"
    run = tmp_path / "run"
    assert main(["train", "resnet18", "--recipe", str(recipe), "--data", "mnist5k[:64]",
                 "--epochs", "1", "--teacher", str(teacher), "-o", str(run)]) == 0  # fmt: skip
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    assert main(["zoo", "--zoo-dir", str(zoo), "publish", str(run), "r18.searched"]) == 0
    loaded = autobin.zoo.load("r18.searched", zoo_dir=zoo)
    compute = (torch.nn.Conv2d, torch.nn.Linear)
    kept = [n for n, m in loaded.named_modules()
            if isinstance(m, compute) and not isinstance(m, BinaryLayer)]  # fmt: skip
    assert sorted(kept) == sorted(chosen)


def test_cli_search_refuses_a_bad_budget_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["search", "resnet18", "--max-float-macs", "lots", "-o", str(tmp_path / "r.yaml")])
    assert "is not a number; write e.g. 5000000, 5e6 or 5M" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "resnet18", "-o", str(tmp_path / "r.yaml")])
    assert "one of the arguments --max-float-macs" in capsys.readouterr().err
    missing = str(tmp_path / "missing")
    code = main(["search", "resnet18", "--max-float-macs", "1M", "--data", "mnist5k",
                 "--teacher", missing, "-o", str(tmp_path / "r.yaml")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autobin search: error: teacher checkpoint") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_budget_numbers_take_suffixes():
    from autobin.cli.errors import budget_number, share

    assert budget_number("5M") == 5e6 and budget_number("2.5k") == 2500 and budget_number("7") == 7
    assert share("95%") == pytest.approx(0.95) and share("0.5") == 0.5
