"""Run a rewritten model once before ``binarize`` returns it: a model that cannot run is an
error naming where it failed, never a return value."""

from __future__ import annotations

import contextlib
import io
import linecache
import traceback
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BinarizeError
from ..module_tools import eval_mode


def _graph_line(exc: BaseException, printed: str) -> str | None:
    """The line of fx-generated graph code that raised: from the traceback if a graph's code is
    on it, else from what torch.fx printed (it marks the line ``<--- HERE``)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<eval_with_key"):
            line = frame.line or linecache.getline(frame.filename, frame.lineno or 0)
            found = line.strip() if line else found
    if found is None:
        lines = printed.splitlines()
        marks = [i for i, line in enumerate(lines) if "<--- HERE" in line]
        before = [line.strip() for line in lines[: marks[-1]] if line.strip()] if marks else []
        found = before[-1] if before else None
    return found


def _smaller(example_inputs: Sequence[Any]) -> tuple[Any, ...] | None:
    """The example inputs with an image input shrunk 4x per side (at least 32 px), or None."""
    if not example_inputs or not isinstance(example_inputs[0], torch.Tensor):
        return None
    x = example_inputs[0]
    if x.dim() != 4 or not x.is_floating_point() or min(x.shape[-2:]) < 128:
        return None
    h, w = (max(32, d // 4) for d in x.shape[-2:])
    return (x[:1, :, :h, :w].contiguous(), *example_inputs[1:])


def _runs(model: nn.Module, example_inputs: Sequence[Any]) -> bool:
    try:  # torch.fx prints the failing graph line to stderr: not for this trial run
        with eval_mode(model), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            model(*example_inputs)
        return True
    except Exception:
        return False


def check_runs(model: nn.Module, example_inputs: Sequence[Any]) -> None:
    """Run ``model`` on ``example_inputs`` (eval mode, no gradients, modes restored).

    An image model is first run at a quarter of the example's size (the run is then nearly
    free); where that fails (a model built for one input size), it runs on the example input
    itself, and a failure there is the error.

    Raises:
        BinarizeError: the forward fails; the message names the innermost module that was
            running and the graph node (its line of generated code) where it failed.
    """
    small = _smaller(example_inputs)
    if small is not None and _runs(model, small):
        return
    names = {id(m): n for n, m in model.named_modules()}
    running: list[str] = []
    failed_in: list[str] = []

    def enter(module, _args):
        running.append(names.get(id(module), type(module).__name__))

    def leave(_module, _args, _output):
        if running:
            running.pop()

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
               torch.nn.modules.module.register_module_forward_hook(leave)]  # fmt: skip
    printed = io.StringIO()  # torch.fx prints the failing graph line to stderr
    try:
        with eval_mode(model), torch.no_grad(), contextlib.redirect_stderr(printed):
            model(*example_inputs)
    except Exception as exc:
        failed_in = list(running)
        where = f"in module {failed_in[-1] or '<root>'!r}" if failed_in else "in the model"
        line = _graph_line(exc, printed.getvalue())
        node = f", at graph node `{line}`" if line else ""
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BinarizeError(
            f"the binarized model fails on the example input {where}{node} "
            f"({type(exc).__name__}: {first}); this is a limitation of autobin's rewrite for this "
            "model: keep that layer float with a recipe rule (`action: float`, `match: {name: "
            "...}`), and report the model"
        ) from exc
    finally:
        for h in handles:
            h.remove()


__all__ = ["check_runs"]
