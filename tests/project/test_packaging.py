"""The project's shape: packages listed for install, a light ``import autobin``, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import autobin
from autobin.cli import main

ROOT = Path(__file__).resolve().parents[2]


def listed_packages(pyproject: str) -> set[str]:
    """``[tool.setuptools] packages`` of a pyproject.toml (tomllib on Python >= 3.11; the
    project supports 3.10 too, where the list is read as the one array it is)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        block = pyproject.split("[tool.setuptools]", 1)[1].split("packages = [", 1)[1]
        return set(re.findall(r'"([^"]+)"', block.split("]", 1)[0]))
    return set(tomllib.loads(pyproject)["tool"]["setuptools"]["packages"])


def test_listed_packages_reads_the_array_without_tomllib_too(monkeypatch):
    text = (ROOT / "pyproject.toml").read_text()
    with_tomllib = listed_packages(text)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib now fails, as on 3.10
    assert listed_packages(text) == with_tomllib and "autobin.zoo" in with_tomllib


def test_every_package_folder_is_listed_in_pyproject():
    listed = listed_packages((ROOT / "pyproject.toml").read_text())
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "autobin").rglob("__init__.py")
    }
    assert on_disk | {"autobin.builtin_recipes", "autobin.builtin_configs"} == listed


def test_builtin_recipes_ship_as_package_data():
    from importlib.resources import files

    names = sorted(
        p.name for p in files("autobin.builtin_recipes").iterdir() if p.name.endswith(".yaml")
    )
    assert names == sorted(f"{n}.yaml" for n in autobin.list_recipes())


def test_builtin_train_configs_ship_as_package_data():
    from importlib.resources import files

    from autobin.train import list_train_configs

    shipped = sorted(p.name for p in files("autobin.builtin_configs").iterdir()
                     if p.name.endswith(".yaml"))  # fmt: skip
    on_disk = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert shipped == on_disk == sorted(f"{n}.yaml" for n in list_train_configs())
    assert len(on_disk) == 5


def _modules_loaded_by(statement: str, condition: str) -> str:
    """What a fresh interpreter prints: the modules ``m`` in ``sys.modules`` after
    ``statement`` for which ``condition`` (an expression in ``m``) holds."""
    code = f"import sys; {statement}; print([m for m in sys.modules if {condition}])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


def test_import_autobin_stays_light():
    heavy = (
        "('mmdet', 'mmengine', 'mmcv', 'autobin.train', 'autobin.zoo', 'autobin.data', "
        "'autobin.search', 'matplotlib', 'sklearn', 'mlxtend')"
    )
    condition = f"m.split('.')[0] in {heavy} or m.startswith({heavy})"
    assert _modules_loaded_by("import autobin", condition) == "[]"


def test_import_autobin_search_imports_no_mmdet():
    """The detectors' search objective is registered by autobin.integrations.mmdet, never
    imported by the search itself."""
    condition = (
        "m.split('.')[0] in ('mmdet', 'mmengine', 'mmcv') or m.startswith('autobin.integrations')"
    )
    assert _modules_loaded_by("import autobin.search", condition) == "[]"


def test_lazy_public_names_resolve():
    from autobin.train import finetune

    assert autobin.finetune is finetune
    assert autobin.search is sys.modules["autobin.search"] and callable(autobin.search)
    assert callable(autobin.zoo.load) and callable(autobin.zoo.publish)


def test_cli_explain_prints_json_report(capsys):
    assert main(["explain", "resnet18", "--num-classes", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["binarized_layers"] == 16


def test_cli_unknown_architecture_is_a_clear_error(capsys):
    assert main(["explain", "resnet1888"]) == 2
    err = capsys.readouterr().err
    assert "unknown timm architecture 'resnet1888'" in err and "resnet18" in err


def test_cli_binarize_writes_a_rebuildable_file(tmp_path):
    import torch

    out = tmp_path / "bnn.pt"
    assert main(["binarize", "resnet18", "--num-classes", "10", "-o", str(out)]) == 0
    with open(out, "rb") as fh:
        assert fh.read(9)[8:] == b"{"  # safetensors: a JSON header, nothing pickled
    model = autobin.load(out)
    config = model.autobin_zoo_config
    assert config["architecture"]["name"] == "resnet18"
    assert config["report"]["totals"]["binarized_layers"] == 16
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
