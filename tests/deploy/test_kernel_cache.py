"""The kernel cache verifies what it loads and rebuilds what is damaged (issue 20)."""

from __future__ import annotations

import ctypes.util
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import COMPILED

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import torch, autobin
    from autobin.deploy import active_kernel
    from autobin.nn import AdaBinConv2d
    from autobin.deploy.reference import packed_conv_reference
    from autobin.deploy import PackedConv2d
    packed = PackedConv2d(AdaBinConv2d(20, 8, 3, padding=1).eval())
    x = torch.randn(2, 20, 6, 6)
    y = packed(x)
    print("ACTIVE", active_kernel())
    print("MATCH", bool((y - packed_conv_reference(packed, x)).abs().max()
                        <= packed.error_bound.max()))
    """
)


def _deploy_in_child(cache: Path) -> dict[str, str]:
    env = {**os.environ, "AUTOBIN_CACHE_DIR": str(cache)}
    env.pop("AUTOBIN_KERNEL", None)
    proc = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def _library(cache: Path) -> Path:
    (lib,) = (cache / "kernels").glob("autobin_kernels_*.so")
    return lib


def _is_verified(lib: Path) -> bool:
    digest = lib.with_name(lib.name + ".sha256").read_text().strip()
    return digest == hashlib.sha256(lib.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(not COMPILED, reason="needs the compiled kernels (test_build checks those)")
def test_damaged_or_replaced_libraries_are_rebuilt_not_loaded(tmp_path):
    cache = tmp_path / "cache"
    out = _deploy_in_child(cache)
    lib = _library(cache)
    assert _is_verified(lib) and out["ACTIVE"] == COMPILED[0] and out["MATCH"] == "True"
    good = lib.read_bytes()

    # truncated: loading it would kill the process (SIGBUS); it is rebuilt instead
    lib.write_bytes(good[: len(good) // 2])
    out = _deploy_in_child(cache)
    assert out["ACTIVE"] == COMPILED[0] and out["MATCH"] == "True"
    assert _is_verified(_library(cache)) and _library(cache).stat().st_size == len(good)

    # flipped bytes in the code
    damaged = bytearray(good)
    for i in range(len(good) // 3, len(good) // 3 + 64):
        damaged[i] ^= 0xFF
    lib.write_bytes(bytes(damaged))
    out = _deploy_in_child(cache)
    assert out["MATCH"] == "True" and _is_verified(_library(cache))

    # another library in its place, digest file updated to match: symbols are checked
    other = Path(ctypes.util.find_library("m") or "")
    other = other if other.is_absolute() else Path("/lib/x86_64-linux-gnu") / other
    if not other.is_file():
        other = Path(sys.executable).resolve()  # not a shared object at all: OSError on load
    shutil.copyfile(other, lib)
    lib.with_name(lib.name + ".sha256").write_text(hashlib.sha256(lib.read_bytes()).hexdigest())
    out = _deploy_in_child(cache)
    assert out["ACTIVE"] == COMPILED[0] and out["MATCH"] == "True"
    assert _is_verified(_library(cache)) and _library(cache).read_bytes() != other.read_bytes()
