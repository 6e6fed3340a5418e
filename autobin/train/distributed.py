"""Several processes on PyTorch's own stack: torchrun detection, process group, DDP, agreement.

Under ``torchrun`` (the environment holds ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) :func:`distributed_session` initializes the default
process group itself (NCCL when the run uses CUDA, gloo on the CPU), pins each process to the
GPU of its ``LOCAL_RANK``, and destroys the group when the work is done, also after an error.
It is re-entrant: a group the caller (or an outer session) already set up is used as is.

A failure in one process must not leave the others waiting forever in a collective. The loop
calls :meth:`Ranks.agree` at fixed points of every step (after fetching a batch, after the
forward pass) and after evaluation: every rank contributes whether it failed; if any did, the
failing rank raises its own error and every other rank raises :class:`RankFailedError` naming
the failed rank and its message. Failures elsewhere end the failing process; torchrun then
stops the others, and a collective never waits longer than the group's timeout.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import DistributedSetupError, RankFailedError

TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: Longest time one collective may wait for the other processes before it fails.
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes (1 without a group)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process takes part."""
        return self.world > 1

    @staticmethod
    def detect() -> Ranks:
        """The ranks of the initialized default process group, else a single process."""
        if dist.is_available() and dist.is_initialized():
            return Ranks(dist.get_rank(), dist.get_world_size())
        return Ranks()

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather(self, value: float, device: torch.device) -> list[float]:
        """Every rank's ``value``, by rank (float64; NaN and infinities arrive as they are)."""
        if not self.active:
            return [value]
        # one slot per rank, zero except this rank's own: a sum then gathers the values, and a
        # NaN or infinity stays in its own slot
        return self.sum([value if r == self.rank else 0.0 for r in range(self.world)], device)

    def any(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Element-wise logical or of ``flags`` over all ranks."""
        if not self.active:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.active:
            dist.barrier()

    def agree(self, error: BaseException | None, device: torch.device, where: str) -> None:
        """Raise on every rank when any rank failed at this point; return when none did.

        Args:
            error: this rank's error at ``where``, or ``None``.
            device: the device collectives of this run use.
            where: the point in the run, quoted in the other ranks' message.
        """
        if not self.active:
            if error is not None:
                raise error
            return
        (failed,) = self.any([error is not None], device)
        if not failed:
            return
        messages: list[str | None] = [None] * self.world
        mine = None if error is None else f"{type(error).__name__}: {error}"
        dist.all_gather_object(messages, mine)
        if error is not None:
            raise error
        first = next(r for r, m in enumerate(messages) if m is not None)
        raise self.failed_elsewhere(first, where, messages[first])

    def failed_elsewhere(self, rank: int, where: str, message: str | None) -> RankFailedError:
        """The error this rank raises when rank ``rank`` failed ``where`` with ``message``."""
        return RankFailedError(
            f"rank {rank} of {self.world} failed {where} ({message}); rank {self.rank} "
            "stopped too. Fix the cause reported by that rank and run again (resume=True / "
            "--resume continues from the last checkpoint)"
        )


def torchrun_environment() -> dict[str, int] | None:
    """``{"world", "rank", "local_rank"}`` from a torchrun environment, else ``None``."""
    if not all(name in os.environ for name in TORCHRUN_VARS):
        return None
    try:
        return {
            "world": int(os.environ["WORLD_SIZE"]),
            "rank": int(os.environ["RANK"]),
            "local_rank": int(os.environ["LOCAL_RANK"]),
        }
    except ValueError:
        names = ", ".join(f"{n}={os.environ[n]!r}" for n in TORCHRUN_VARS)
        raise DistributedSetupError(
            f"the torchrun environment is malformed ({names}): WORLD_SIZE, RANK and LOCAL_RANK "
            "must be integers; launch with torchrun, or unset these variables for one process"
        ) from None


def backend_for(device: str) -> str:
    """``"nccl"`` when the run uses CUDA (``device`` ``auto`` with a GPU, or ``cuda...``)."""
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda and torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def distributed_session(
    device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[Ranks]:
    """Initialize ``torch.distributed`` from torchrun's environment for the duration.

    Without torchrun (or with ``WORLD_SIZE=1``) nothing is initialized and a single-process
    :class:`Ranks` is yielded. An already initialized group is used and left alone.

    Args:
        device: the run's device setting (``"auto"``, ``"cpu"``, ``"cuda"``, ...), which picks
            the backend: NCCL for CUDA, gloo otherwise.
        timeout_s: longest wait of one collective before it fails instead of hanging.
    """
    if dist.is_available() and dist.is_initialized():
        yield Ranks.detect()
        return
    env = torchrun_environment()
    if env is None or env["world"] <= 1:
        yield Ranks()
        return
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("this torch build has no torch.distributed; run a single process")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(env["local_rank"])
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield Ranks.detect()
        # every rank done before any tears the group down: a rank whose peer already closed
        # the gloo connections aborted at exit once ("terminate called without an active
        # exception") under a loaded CI machine
        dist.barrier()
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, *, sync_bn: bool) -> nn.Module:
    """``model`` (already on ``device``) wrapped for data-parallel training.

    With ``sync_bn``, BatchNorm layers are first converted in place to ``SyncBatchNorm``
    (statistics over the global batch; same parameter and buffer names, so checkpoints stay
    interchangeable with plain BatchNorm).
    """
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Ranks",
    "backend_for",
    "distributed_session",
    "torchrun_environment",
    "wrap_ddp",
]
