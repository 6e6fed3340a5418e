"""Build and load the packed-kernel library; choose the kernel path.

The C++ source ``kernel.cpp`` ships inside the package. On first use it is compiled with the
system C++ compiler (``$CXX``, default ``g++``; ``-O3 -std=c++20 -fopenmp``, a few seconds) into
a per-user cache directory and loaded with :mod:`ctypes`. The library name carries the sha256
of the source and flags, so a changed source builds anew and concurrent builds never see a half
written file (each compiles to a temporary name and renames it into place).

What is loaded is verified first: beside each library lies ``<library>.sha256``, the sha256 of
the library's own bytes, written when it was built. A library whose bytes do not match (truncated,
damaged, another file in its place) or that lacks the expected symbols or ABI version
(:data:`ABI_VERSION`) is rebuilt, atomically, before anything of it runs; loading a damaged
shared object could otherwise crash the process (SIGBUS, SIGILL).

Cache directory: ``$AUTOBIN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/autobin`` (default
``~/.cache/autobin``), subfolder ``kernels``.

Kernel paths, fastest first: ``avx512`` (AVX-512 VPOPCNTDQ), ``avx2`` (AVX2 nibble-lookup
popcount), ``portable`` (plain C++), ``reference`` (pure torch, :mod:`.reference`). The default
``auto`` takes the fastest the CPU supports. Force one with ``AUTOBIN_KERNEL=<path>`` or
:func:`use_kernel`. When the library cannot be built or loaded, ``auto`` falls back to
``reference`` with a :class:`KernelFallbackWarning` (once per process); forcing a compiled path
then raises :class:`KernelUnavailableError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_write
from .errors import DeployError

KERNEL_PATHS: tuple[str, ...] = ("avx512", "avx2", "portable", "reference")
"""Every kernel path, fastest first."""

_PATH_CODES = {"portable": 0, "avx2": 1, "avx512": 2}
_FEATURE_BITS = {"avx2": 1, "avx512": 2}
SOURCE = Path(__file__).with_name("kernel.cpp")
CXX_FLAGS: tuple[str, ...] = ("-O3", "-std=c++20", "-fPIC", "-shared", "-fopenmp")
ENV_KERNEL = "AUTOBIN_KERNEL"
ENV_CACHE = "AUTOBIN_CACHE_DIR"
ABI_VERSION = 10
"""What ``autobin_abi_version()`` in ``kernel.cpp`` returns; another value means rebuild."""
_SYMBOLS = ("autobin_abi_version", "autobin_cpu_features", "autobin_pack", "autobin_packed_conv",
            "autobin_maxout", "autobin_conv", "autobin_int8_conv", "autobin_bf16_conv",
            "autobin_fp32_conv",
            "autobin_run_plan", "autobin_plan_op_size", "autobin_conv_op")  # fmt: skip


class KernelFallbackWarning(RuntimeWarning):
    """The compiled kernels are unavailable; the pure-torch reference runs instead (slower)."""


class KernelUnavailableError(DeployError):
    """A forced kernel path cannot run on this machine (not built, or the CPU lacks it)."""


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_build_error: str | None = None
_forced: list[str] = []


def cache_dir() -> Path:
    """The directory compiled kernels are cached in (see the module docstring)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autobin" / "kernels"


def _compiler() -> str:
    return os.environ.get("CXX") or "g++"


def _library_path() -> Path:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(" ".join((_compiler(), *CXX_FLAGS)).encode())
    return cache_dir() / f"autobin_kernels_{digest.hexdigest()[:16]}.so"


def _digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(library: Path) -> bool:
    """Whether ``library`` exists and its bytes have the sha256 recorded when it was built."""
    try:
        recorded = _digest_path(library).read_text().strip()
        return recorded == _file_sha256(library)
    except OSError:
        return False


def _build(target: Path) -> ctypes.CDLL:
    """Build the library, load and check it, then move it into ``target`` (its digest file is
    in place first). Loading the new file under its temporary name keeps a wrong library that
    this process already opened at ``target`` from being handed back by the dynamic loader."""
    compiler = _compiler()
    if shutil.which(compiler) is None:
        raise DeployError(f"no C++ compiler {compiler!r} found (set CXX or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        cmd = [compiler, *CXX_FLAGS, str(SOURCE), "-o", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise DeployError(
                f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}"
            )
        digest = _file_sha256(Path(tmp))
        lib = _open(Path(tmp))
        atomic_write(_digest_path(target), lambda fh: fh.write(digest.encode() + b"\n"))
        os.replace(tmp, target)
        return lib
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _open(path: Path) -> ctypes.CDLL:
    """Load a verified library and check its symbols and ABI version (DeployError if wrong)."""
    lib = ctypes.CDLL(str(path))
    missing = [name for name in _SYMBOLS if not hasattr(lib, name)]
    if missing:
        raise DeployError(f"{path} is not the autobin kernel library (lacks {missing[0]})")
    lib.autobin_abi_version.restype = ctypes.c_int
    lib.autobin_abi_version.argtypes = []
    version = lib.autobin_abi_version()
    if version != ABI_VERSION:
        raise DeployError(f"{path} has kernel ABI version {version}, expected {ABI_VERSION}")
    _declare(lib)
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, f32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.autobin_cpu_features.restype = i32
    lib.autobin_cpu_features.argtypes = []
    lib.autobin_pack.restype = None
    lib.autobin_pack.argtypes = [ptr, i64, i64, i64, f32, i32, i32, ptr, ptr]
    lib.autobin_packed_conv.restype = None
    lib.autobin_packed_conv.argtypes = [ptr, *[i64] * 7, i32, i32, i32, ptr, i64, i64, f32,
                                        ptr, ptr, *[i64] * 7, *[ptr] * 6,
                                        *[ptr] * 5, i64, f32, ptr, ptr]  # fmt: skip
    lib.autobin_maxout.restype = None
    lib.autobin_maxout.argtypes = [ptr, i64, i64, ptr, ptr, i32, ptr]
    lib.autobin_int8_conv.restype = i32
    lib.autobin_int8_conv.argtypes = [ptr, *[i64] * 12, ptr, i64, i64, i64, *[ptr] * 5, i32, ptr]
    lib.autobin_bf16_conv.restype = i32
    lib.autobin_bf16_conv.argtypes = [ptr, *[i64] * 12, ptr, i64, i64, i64, *[ptr] * 3, i32, ptr]
    lib.autobin_fp32_conv.restype = None
    lib.autobin_fp32_conv.argtypes = [ptr, *[i64] * 12, ptr, i64, i64, *[ptr] * 3, i32, i32, ptr,
                                      i64, f32, ptr, ptr]  # fmt: skip
    lib.autobin_run_plan.restype = i32
    lib.autobin_run_plan.argtypes = [ptr, i64, i64, ptr, ptr, ptr, i32, i32, i64, i64, i64, i64]
    lib.autobin_conv_op.restype = None
    lib.autobin_conv_op.argtypes = [*[ptr] * 8, i32, i32]
    lib.autobin_plan_op_size.restype = i64
    lib.autobin_plan_op_size.argtypes = []
    lib.autobin_conv.restype = None
    lib.autobin_conv.argtypes = [ptr, ptr, *[i64] * 5, ptr, ptr, *[i64] * 11, *[ptr] * 7,
                                 i32, i32, ptr, *[ptr] * 3, i64, f32, ptr, ptr]  # fmt: skip


def load_library() -> ctypes.CDLL:
    """Build (if not cached) and load the kernel library.

    Raises:
        DeployError: no compiler, the build failed, or the library cannot be loaded; the
            message holds the compiler output.
    """
    global _library, _build_error
    with _lock:
        if _library is not None:
            return _library
        if _build_error is not None:
            raise DeployError(_build_error)
        try:
            import torch  # noqa: F401  (loads torch's libgomp first, so the kernels share it)

            path = _library_path()
            if not _verified(path):  # missing, damaged or replaced: never load it, rebuild
                lib = _build(path)
            else:
                try:
                    lib = _open(path)
                except (OSError, DeployError):  # a wrong library with a matching digest
                    lib = _build(path)
        except (OSError, subprocess.SubprocessError, DeployError) as e:
            _build_error = f"the packed binary kernels are unavailable: {e}"
            raise DeployError(_build_error) from e
        _library = lib
        return lib


_features: int | None = None


def _cpu_features() -> int:
    """``autobin_cpu_features()`` of the loaded library (asked once: the CPU does not change
    under a running process; every deployed layer call needs it)."""
    global _features
    if _features is None:
        _features = int(load_library().autobin_cpu_features())
    return _features


def _supported_compiled() -> list[str]:
    try:
        features = _cpu_features()
    except DeployError:
        return []
    return [p for p in ("avx512", "avx2") if features & _FEATURE_BITS[p]] + ["portable"]


def cpu_has_vnni() -> bool:
    """Whether the kernel library is loaded and the CPU has AVX-512 VNNI (int8 float parts)."""
    try:
        return bool(_cpu_features() & 4)
    except DeployError:
        return False


def cpu_has_bf16() -> bool:
    """Whether the kernel library is loaded and the CPU has AVX-512 BF16 (bf16 float parts)."""
    try:
        return bool(_cpu_features() & 8)
    except DeployError:
        return False


def available_kernels() -> list[str]:
    """The kernel paths that run on this machine, fastest first (always ends in reference)."""
    return [*_supported_compiled(), "reference"]


def _check_path(path: str) -> str:
    if path not in (*KERNEL_PATHS, "auto"):
        raise ValueError(
            f"unknown kernel path {path!r}; valid choices are {['auto', *KERNEL_PATHS]}"
        )
    return path


def requested_kernel() -> str:
    """The kernel path asked for: :func:`use_kernel`, else ``$AUTOBIN_KERNEL``, else auto."""
    if _forced:
        return _forced[-1]
    env = os.environ.get(ENV_KERNEL, "").strip().lower()
    if env:
        try:
            return _check_path(env)
        except ValueError as e:
            raise ValueError(f"{ENV_KERNEL}: {e}") from None
    return "auto"


_warned = False


def active_kernel() -> str:
    """The kernel path that runs now (resolves ``auto``; see the module docstring).

    Raises:
        KernelUnavailableError: a forced compiled path this machine cannot run.
    """
    global _warned
    path = requested_kernel()
    if path == "reference":
        return path
    supported = _supported_compiled()
    if path == "auto":
        if supported:
            return supported[0]
        if not _warned:
            _warned = True
            warnings.warn(
                f"{_build_error or 'the packed binary kernels are unavailable'}; deployed "
                "layers run the pure-torch reference instead (exact, but slower)",
                KernelFallbackWarning,
                stacklevel=3,
            )
        return "reference"
    if path not in supported:
        why = _build_error or f"this CPU supports only {supported}"
        raise KernelUnavailableError(f"kernel path {path!r} cannot run here: {why}")
    return path


def path_code(path: str) -> int:
    """The C++ kernel's code for a compiled path."""
    return _PATH_CODES[path]


@contextlib.contextmanager
def use_kernel(path: str) -> Iterator[None]:
    """Force a kernel path inside a ``with`` block (``auto`` restores the automatic choice)."""
    _forced.append(_check_path(path))
    try:
        yield
    finally:
        _forced.pop()


__all__ = [
    "ENV_CACHE",
    "ENV_KERNEL",
    "KERNEL_PATHS",
    "KernelFallbackWarning",
    "KernelUnavailableError",
    "active_kernel",
    "available_kernels",
    "cache_dir",
    "cpu_has_bf16",
    "cpu_has_vnni",
    "load_library",
    "requested_kernel",
    "use_kernel",
]
