"""A pool of worker processes for sweeps that must not hang: every wait is bounded.

``concurrent.futures.ProcessPoolExecutor`` can wait forever once a worker dies (killed for
memory, a crash in native code) while it recycles workers (``max_tasks_per_child``): the
parent sleeps on a result nobody will send. :func:`run_pool` instead watches each worker
itself. Every task runs in one worker, which the parent knows; the parent polls with a
timeout and

* a worker that exited without sending its result gets the task reported as failed
  (``Crashed``, with the exit code or signal), and a fresh worker takes its place;
* a task that runs past ``task_limit`` seconds (its own time budget failed to stop it, e.g.
  inside native code that ignores signals) gets its worker killed and is reported as
  ``TimedOut``;
* past ``deadline`` the remaining workers are killed and the tasks not run are returned.

Used by ``benchmarks/coverage.py --jobs N``; a worker serves ``tasks_per_worker`` tasks, then a
fresh one replaces it (memory a model leaves behind is returned).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

POLL_S = 1.0  # the longest the parent sleeps before it looks at its workers again
_NOTHING = object()  # no result from a worker yet


@dataclass(frozen=True)
class Crashed:
    """The worker running the task exited without a result (``how``: exit code or signal)."""

    how: str


@dataclass(frozen=True)
class TimedOut:
    """The task ran past ``task_limit`` seconds and its worker was killed."""

    seconds: float


@dataclass(frozen=True)
class Raised:
    """The task raised (``text``: the exception's type and message, ``trace``: traceback)."""

    text: str
    trace: str


def _serve(conn: Connection, fn: Callable, initializer: Callable | None, initargs: tuple) -> None:
    """Worker loop: receive ``(index, args)``, send ``(index, result)``; ``None`` ends it."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        index, args = task
        try:
            result = fn(*args)
        except Exception as exc:
            result = Raised(f"{type(exc).__name__}: {exc}"[:300], traceback.format_exc(limit=-3))
        conn.send((index, result))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Worker:
    def __init__(self, ctx: Any, fn: Callable, initializer: Callable | None, initargs: tuple):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, fn, initializer, initargs),
                                   daemon=True)  # fmt: skip
        self.process.start()
        child.close()
        self.task: int | None = None
        self.started = 0.0
        self.served = 0

    def give(self, index: int, args: tuple) -> None:
        self.conn.send((index, args))
        self.task, self.started = index, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.kill()
        else:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def run_pool(
    fn: Callable[..., Any],
    tasks: Iterable[tuple],
    *,
    jobs: int,
    task_limit: float,
    on_result: Callable[[int, Any], None],
    initializer: Callable | None = None,
    initargs: tuple = (),
    deadline: float | None = None,
    tasks_per_worker: int = 8,
    context: str | None = None,
) -> list[int]:
    """Run ``fn(*args)`` for every ``args`` of ``tasks`` in ``jobs`` worker processes.

    Args:
        fn: a picklable top-level function.
        tasks: the argument tuples.
        jobs: worker processes at a time.
        task_limit: seconds one task may run before its worker is killed (``TimedOut``).
        on_result: called in the parent as each task ends, with the task's index and its
            result: ``fn``'s return value, or :class:`Raised`, :class:`Crashed`,
            :class:`TimedOut`.
        initializer, initargs: run once in every new worker.
        deadline: ``time.monotonic()`` value after which no task starts and running ones are
            killed.
        tasks_per_worker: tasks one worker serves before a fresh one replaces it.
        context: multiprocessing start method (default: the platform's).

    Returns:
        The indices of the tasks that never ran (past the deadline), in order.
    """
    ctx = mp.get_context(context)
    pending = deque(enumerate(tasks))
    workers: list[_Worker] = []
    try:
        while pending or any(w.task is not None for w in workers):
            if deadline is not None and time.monotonic() > deadline:
                break
            _fill(workers, pending, jobs, ctx, fn, initializer, initargs)
            busy = [w for w in workers if w.task is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_S)
            for worker in busy:
                _collect(worker, workers, on_result, task_limit, tasks_per_worker)
    finally:
        running = [w for w in workers if w.task is not None]
        for worker in workers:
            worker.stop(kill=worker in running)
    return [index for w in running for index in [w.task]] + [i for i, _ in pending]


def _fill(workers, pending, jobs, ctx, fn, initializer, initargs) -> None:
    """Start workers up to ``jobs`` and give every idle one the next task."""
    while len(workers) < jobs and pending:
        workers.append(_Worker(ctx, fn, initializer, initargs))
    for worker in workers:
        if worker.task is None and pending:
            worker.give(*pending.popleft())


def _collect(worker: _Worker, workers: list[_Worker], on_result, task_limit: float,
             tasks_per_worker: int) -> None:  # fmt: skip
    """Take the worker's result if it sent one; handle a dead or overdue worker."""
    index = worker.task
    result: Any = _NOTHING
    if worker.conn.poll():
        try:
            _, result = worker.conn.recv()
        except (EOFError, OSError):  # the pipe closed: the worker died mid-task
            result = _NOTHING
    if result is _NOTHING and not worker.process.is_alive():
        worker.process.join(timeout=5)
        result = Crashed(_describe_exit(worker.process.exitcode))
    elif result is _NOTHING and time.monotonic() - worker.started > task_limit:
        result = TimedOut(task_limit)
        worker.stop(kill=True)
    if result is _NOTHING:
        return
    worker.task = None
    worker.served += 1
    on_result(index, result)
    if isinstance(result, (Crashed, TimedOut)) or worker.served >= tasks_per_worker:
        if not isinstance(result, TimedOut):
            worker.stop(kill=isinstance(result, Crashed))
        workers.remove(worker)


def cpu_threads_per_job(jobs: int) -> int:
    """Torch threads per worker so that ``jobs`` workers share the machine's cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


def one_line(exc: BaseException, width: int) -> str:
    """``Type: first line of the message``, the message cut to ``width`` characters."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:width]}"


def failure_cause(stage: str, reason: str, width: int) -> str:
    """A failure's cause for grouping: its stage and its message with quoted names and numbers
    abstracted, cut to ``width`` characters."""
    text = re.sub(r"'[^']*'", "'*'", reason)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return f"{stage}: {text[:width]}"


__all__ = [
    "Crashed",
    "Raised",
    "TimedOut",
    "cpu_threads_per_job",
    "failure_cause",
    "one_line",
    "run_pool",
]
