"""The suite's own guards: a per-test time limit, strict markers, autobin's warnings as errors.

One pytest subprocess runs a probe file under this project's pyproject.toml and conftest.py;
each probe test is built to trip one guard, and the guard must turn it into a failure.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBES = textwrap.dedent(
    """
    import time
    import warnings

    import pytest

    from autobin.errors import AutobinWarning
    from autobin.train.errors import TrainWarning


    @pytest.mark.timeout(1)
    def test_hangs():
        time.sleep(30)


    def test_hangs_past_the_default_limit():
        time.sleep(30)


    def test_warns_from_autobin():
        warnings.warn("resume mismatch", TrainWarning, stacklevel=1)


    def test_expects_the_warning():
        with pytest.warns(AutobinWarning, match="expected"):
            warnings.warn("an expected warning", TrainWarning, stacklevel=1)


    def test_third_party_warning_is_not_an_error():
        warnings.warn("some library's deprecation", DeprecationWarning, stacklevel=1)
    """
)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "test_probes.py").write_text(PROBES)
    (folder / "test_marker_typo.py").write_text(
        "import pytest\n\n\n@pytest.mark.slwo\ndef test_typo():\n    pass\n"
    )
    cmd = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
           "--rootdir", str(ROOT), "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-o", "timeout=2", "--continue-on-collection-errors", "-rA", str(folder)]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests"),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "400",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_suite_has_a_default_time_limit(pytestconfig) -> None:
    assert float(pytestconfig.getini("timeout")) == 900


def test_a_hanging_test_fails_with_its_limit_and_what_to_do(probe_run) -> None:
    assert "test_probes.py::test_hangs - Failed: Timeout (>1.0s) from pytest-timeout" in probe_run
    assert "this test ran past its time limit (1 s, from its @pytest.mark.timeout)" in probe_run
    assert "::test_hangs_past_the_default_limit - Failed: Timeout (>2.0s)" in probe_run
    assert "this test ran past its time limit (2 s, the suite's default)" in probe_run


def test_an_unregistered_marker_is_an_error(probe_run) -> None:
    assert "'slwo' not found in `markers` configuration option" in probe_run


def test_autobin_warnings_fail_unless_expected(probe_run) -> None:
    assert "::test_warns_from_autobin - autobin.train.errors.TrainWarning: resume mismatch" in (
        probe_run
    )
    assert "PASSED " in probe_run and "::test_expects_the_warning\n" in probe_run
    assert "::test_third_party_warning_is_not_an_error\n" in probe_run
    assert "3 failed, 2 passed" in probe_run


def _warn_categories(path: Path) -> list[tuple[int, str | None]]:
    """``(line, category name)`` of every ``warnings.warn`` call in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
            category = node.args[1] if len(node.args) > 1 else None
            category = next((k.value for k in node.keywords if k.arg == "category"), category)
            found.append((node.lineno, ast.unparse(category) if category is not None else None))
    return found


# The deploy package's two warnings belong to another change in flight (to move onto
# AutobinWarning there); until then they are the only autobin warnings the suite lets through.
NOT_YET_AUTOBIN_WARNINGS = {"NoBinaryLayersWarning", "KernelFallbackWarning"}


def test_every_warning_autobin_issues_is_an_autobin_warning() -> None:
    import autobin.errors

    bad = []
    for path in sorted((ROOT / "autobin").rglob("*.py")):
        for line, category in _warn_categories(path):
            if category in NOT_YET_AUTOBIN_WARNINGS:
                continue
            cls = _resolve_class(path, category)
            if cls is None or not issubclass(cls, autobin.errors.AutobinWarning):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({category})")
    assert bad == [], "warnings.warn without an AutobinWarning subclass as category"


def _resolve_class(path: Path, name: str | None) -> type | None:
    if name is None:
        return None
    import importlib

    import autobin.errors

    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    try:
        return getattr(importlib.import_module(module), name.split(".")[-1])
    except ImportError:  # a module that needs an extra (mmdet): read its class statement
        bases = {
            node.name: [ast.unparse(b) for b in node.bases]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef)
        }
        if "AutobinWarning" in bases.get(name, []):
            return autobin.errors.AutobinWarning
        return None
    except AttributeError:
        return None
