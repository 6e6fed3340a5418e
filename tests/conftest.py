"""Fixtures shared across test folders, and suite-wide hooks: a failure by pytest-timeout says
what the limit is and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from cifar_batches import write_cifar

TIMEOUT_HINT = (
    "this test ran past its time limit ({limit}) and was stopped: a hang in the test or in a "
    "process it started (the stacks above show where each thread was). The default limit is "
    "`timeout` in pyproject.toml [tool.pytest.ini_options]; a test that is slow on purpose "
    "sets its own with @pytest.mark.timeout(SECONDS)."
)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A CIFAR-10 folder of 300 training and 100 test images in the release's format."""
    return write_cifar(tmp_path / "cifar", "cifar10")


def timeout_limit(item: pytest.Item) -> str:
    """The limit pytest-timeout applies to ``item``, in words."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return f"{marker.args[0]} s, from its @pytest.mark.timeout"
    return f"{item.config.getini('timeout')} s, the suite's default"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and "from pytest-timeout" in str(report.longrepr):
        report.sections.append(("timeout", TIMEOUT_HINT.format(limit=timeout_limit(item))))
    return report
