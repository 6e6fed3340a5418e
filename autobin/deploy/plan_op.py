"""``PlanOp``: the C++ kernels' record of one deployed layer call (geometry, buffer addresses,
arena slots), shared by compiled chains (:mod:`.plan`) and single packed-layer calls
(:mod:`.layers`, built once per input shape)."""

from __future__ import annotations

import ctypes

from .build import load_library
from .errors import DeployError


class PlanOp(ctypes.Structure):
    """Mirror of ``PlanOp`` in ``kernel.cpp`` (its size is checked against the library's)."""

    _fields_ = [
        *[(name, ctypes.c_int64) for name in (
            "kind", "inp", "extra", "out", "in_act", "in_sa", "next_act", "next_sa",
            "n", "h", "w", "c", "pt", "pl", "oh", "ow", "residual",
            "groups", "cg", "og", "kh", "kw", "sh", "sw", "dh", "dw", "next_groups")],
        ("thr", ctypes.c_double),
        ("next_thr", ctypes.c_double),
        *[(name, ctypes.c_void_p) for name in (
            "wt", "pcw", "cdot", "csw", "cn", "bias", "m", "csa", "gp", "gn", "wq")],
        ("r4", ctypes.c_int64),
        ("o", ctypes.c_int64),
        ("op", ctypes.c_int64),
        ("sumw", ctypes.c_void_p),
        ("wscale", ctypes.c_void_p),
    ]  # fmt: skip


def check_layout() -> None:
    """Refuse a kernel library whose ``PlanOp`` differs from this mirror."""
    size = load_library().autobin_plan_op_size()
    if size != ctypes.sizeof(PlanOp):
        raise DeployError(
            f"the kernel library's PlanOp has {size} bytes, autobin expects "
            f"{ctypes.sizeof(PlanOp)}: the library is out of date (delete the kernel cache)"
        )


__all__ = ["PlanOp", "check_layout"]
