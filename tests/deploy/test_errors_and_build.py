"""Inference-only errors, the no-op case, kernel selection and the build from a clean cache."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import autobin
from autobin.deploy import (
    DeployedModel,
    DeployError,
    KernelUnavailableError,
    NoBinaryLayersWarning,
    PackedConv2d,
    active_kernel,
    available_kernels,
    use_kernel,
)
from autobin.deploy import build as build_module
from autobin.nn import AdaBinConv2d, BinaryConv2d, Maxout

from .conftest import integer_conv

ROOT = Path(__file__).resolve().parents[2]


def _small_bnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        Maxout(16),
        AdaBinConv2d(16, 24, 3, padding=1),
        nn.BatchNorm2d(24),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 4),
    ).eval()


def test_deploying_a_model_in_training_mode_is_an_error():
    model = _small_bnn().train()
    with pytest.raises(DeployError, match=r"training mode.*model\.eval\(\)"):
        autobin.deploy(model)


def test_requires_grad_inputs_are_an_error():
    fast = autobin.deploy(_small_bnn())
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    with pytest.raises(DeployError, match="requires grad"):
        fast(x)
    packed = fast.model[3]
    with pytest.raises(DeployError, match="requires grad"):
        packed(torch.randn(1, 16, 5, 5, requires_grad=True))
    assert fast(x.detach()).shape == (1, 4)


def test_deployed_models_refuse_training_mode():
    fast = autobin.deploy(_small_bnn())
    with pytest.raises(DeployError, match="inference only"):
        fast.train()
    with pytest.raises(DeployError, match="inference only"):
        fast.model[3].train()
    assert fast.eval() is fast
    assert not any(p.requires_grad for p in fast.parameters())


def test_model_without_binary_layers_is_returned_unchanged_with_a_message():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with pytest.warns(NoBinaryLayersWarning, match="no binary layers"):
        out = autobin.deploy(model)
    assert out is model


def test_plain_module_deploys_without_folding_and_matches():
    model = _small_bnn()
    fast = autobin.deploy(model, float_parts="fp32")
    assert isinstance(fast, DeployedModel)
    assert fast.summary.packed == ["3"] and fast.summary.folded_norms == {}
    assert isinstance(fast.model[3], PackedConv2d)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    assert isinstance(model[3], BinaryConv2d)  # the source is untouched


def test_unpackable_layers_stay_fake_quantized_and_are_reported():
    model = _small_bnn()
    model[3].binarize_activations = False
    fast = autobin.deploy(model, float_parts="fp32")
    assert fast.summary.packed == [] and "activation binarization" in fast.summary.kept["3"]
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():  # (channels-last float convs sum in another order)
        assert torch.allclose(fast(x), model(x), rtol=1e-5, atol=1e-6)


def test_wrong_input_shapes_are_clear_errors():
    packed = PackedConv2d(integer_conv(8, 4, 3, 1, 1, 1, 1, seed=0))
    with pytest.raises(ValueError, match=r"expects input \(N, 8, H, W\)"):
        packed(torch.randn(1, 7, 5, 5))


def test_kernel_selection_and_forcing():
    assert available_kernels()[-1] == "reference"
    with use_kernel("reference"):
        assert active_kernel() == "reference"
    with pytest.raises(ValueError, match="unknown kernel path 'avx1024'"), use_kernel("avx1024"):
        pass
    assert active_kernel() == available_kernels()[0]


def test_forcing_a_path_the_cpu_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(build_module, "_supported_compiled", lambda: ["portable"])
    packed = PackedConv2d(integer_conv(8, 4, 3, 1, 1, 1, 1, seed=0))
    with use_kernel("avx512"), pytest.raises(KernelUnavailableError, match="cannot run here"):
        packed(torch.randn(1, 8, 5, 5))


def test_environment_variable_forces_a_path(monkeypatch):
    monkeypatch.setenv("AUTOBIN_KERNEL", "reference")
    assert active_kernel() == "reference"
    monkeypatch.setenv("AUTOBIN_KERNEL", "fastest")
    with pytest.raises(ValueError, match="AUTOBIN_KERNEL"):
        active_kernel()


_CHILD = textwrap.dedent(
    """
    import warnings, torch
    from autobin.deploy import PackedConv2d, available_kernels, active_kernel
    from autobin.deploy.reference import packed_conv_reference
    from autobin.nn import AdaBinConv2d
    layer = AdaBinConv2d(20, 8, 3, padding=1).eval()
    packed = PackedConv2d(layer)
    x = torch.randn(2, 20, 6, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = packed(x)
    ref = packed_conv_reference(packed, x)
    print("PATHS", ",".join(available_kernels()))
    print("ACTIVE", active_kernel())
    print("WARNED", any("unavailable" in str(w.message) for w in caught))
    print("MATCH", bool((y - ref).abs().max() <= packed.error_bound.max()))
    """
)


def _run_child(tmp_path: Path, **env: str) -> dict[str, str]:
    full = {**os.environ, "AUTOBIN_CACHE_DIR": str(tmp_path / "cache"), **env}
    full.pop("AUTOBIN_KERNEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, env=full, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reads them, from /proc/cpuinfo (independent of
    the library, whose own cpuid check is what is under test)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _builds_here() -> bool:
    """An x86-64 Linux machine with a C++ compiler: the compiled kernels must build here."""
    compiler = os.environ.get("CXX") or "g++"
    return (
        platform.machine() in ("x86_64", "AMD64")
        and Path("/proc/cpuinfo").exists()
        and shutil.which(compiler) is not None
    )


BUILDS_HERE = pytest.mark.skipif(
    not _builds_here(), reason="not an x86-64 Linux machine with a C++ compiler"
)


@BUILDS_HERE
def test_every_cpu_path_this_machine_has_is_built_and_tested():
    """A kernel that does not build, or a CPU path the machine has that the suite would not
    run, fails here (the deploy tests run every path of available_kernels())."""
    flags = _cpu_flags()
    expected = []
    if {"avx512f", "avx512_vpopcntdq", "popcnt"} <= flags:
        expected.append("avx512")
    if {"avx2", "fma", "popcnt"} <= flags:
        expected.append("avx2")
    expected += ["portable", "reference"]
    assert available_kernels() == expected, build_module._build_error
    from .conftest import PATHS

    assert expected == PATHS  # the parametrized kernel tests run every one of them


@BUILDS_HERE
def test_kernels_build_from_a_clean_cache_directory(tmp_path):
    out = _run_child(tmp_path)
    built = list((tmp_path / "cache" / "kernels").glob("autobin_kernels_*.so"))
    assert len(built) == 1
    assert out["PATHS"].split(",") == available_kernels()
    assert out["ACTIVE"] == available_kernels()[0] and out["MATCH"] == "True"
    assert out["WARNED"] == "False"


def test_a_failed_build_falls_back_to_the_reference_with_a_warning(tmp_path):
    out = _run_child(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert out["PATHS"] == "reference" and out["ACTIVE"] == "reference"
    assert out["WARNED"] == "True" and out["MATCH"] == "True"


def test_import_autobin_does_not_build_or_load_the_kernels():
    code = "import autobin, sys; print('autobin.deploy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "False"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(autobin.deploy)
