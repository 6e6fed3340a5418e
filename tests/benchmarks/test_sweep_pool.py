"""benchmarks/sweep_pool.py: a parallel sweep survives dead and stuck workers, never hangs.

The tasks are real processes doing what broke ``coverage.py --jobs 2``: one kills its own
worker (as the kernel's OOM killer does), one sleeps past every limit (native code that ignores
the in-process alarm). Every other task must still finish, each in a bounded time.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from sweep_pool import Crashed, Raised, TimedOut, run_pool

pytestmark = pytest.mark.timeout(120)


def task(kind: str, value: int) -> tuple[int, int]:
    """A sweep task: ``(value squared, worker pid)``, or a death of the chosen kind."""
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "exit":
        os._exit(3)
    if kind == "stuck":
        time.sleep(600)
    if kind == "raise":
        raise ValueError(f"bad value {value}")
    return value * value, os.getpid()


def sweep(tasks, **options):
    results: dict[int, object] = {}
    start = time.monotonic()
    not_run = run_pool(task, tasks, on_result=results.__setitem__, **options)
    return results, not_run, time.monotonic() - start


def test_a_killed_worker_fails_its_task_and_a_fresh_worker_runs_the_rest() -> None:
    tasks = [("ok", 1), ("die", 2), ("ok", 3), ("exit", 4), ("ok", 5), ("ok", 6), ("ok", 7)]
    results, not_run, _ = sweep(tasks, jobs=2, task_limit=60)
    assert not_run == []
    assert results[1] == Crashed("killed by SIGKILL")
    assert results[3] == Crashed("exited with code 3")
    assert {i: r[0] for i, r in results.items() if isinstance(r, tuple)} == {
        0: 1, 2: 9, 4: 25, 5: 36, 6: 49
    }  # fmt: skip


def test_a_stuck_task_is_killed_at_its_limit_and_the_sweep_goes_on() -> None:
    results, not_run, took = sweep([("stuck", 0), ("ok", 1), ("ok", 2)], jobs=2, task_limit=2)
    assert results[0] == TimedOut(2) and results[1][0] == 1 and results[2][0] == 4
    assert not_run == [] and took < 30


def test_an_exception_is_a_result_and_the_worker_keeps_serving() -> None:
    results, _, _ = sweep([("raise", 7), ("ok", 8)], jobs=1, task_limit=60)
    assert isinstance(results[0], Raised) and results[0].text == "ValueError: bad value 7"
    assert "bad value 7" in results[0].trace and results[1][0] == 64


def test_workers_are_replaced_after_their_share_of_tasks() -> None:
    results, _, _ = sweep([("ok", i) for i in range(6)], jobs=1, task_limit=60,
                          tasks_per_worker=2)  # fmt: skip
    pids = [results[i][1] for i in range(6)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


def test_past_the_deadline_running_tasks_stop_and_the_rest_are_returned() -> None:
    tasks = [("ok", 0), ("stuck", 1), ("stuck", 2), ("ok", 3), ("ok", 4)]
    results, not_run, took = sweep(tasks, jobs=2, task_limit=600,
                                   deadline=time.monotonic() + 3)  # fmt: skip
    assert results == {0: (0, results[0][1])}
    assert sorted(not_run) == [1, 2, 3, 4] and took < 30
