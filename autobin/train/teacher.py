"""The teacher of a distillation run: replicated on every rank, frozen, pinned to eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen_teacher(teacher: nn.Module | None) -> Iterator[nn.Module | None]:
    """Freeze ``teacher`` (no gradients) and pin it to eval mode for the duration.

    ``teacher.train()`` (including the call a parent module's ``.train()`` makes) keeps it in
    eval mode while the context is active. The teacher stays frozen and in eval mode afterwards.
    Under several processes every rank holds its own full copy (it is never wrapped in
    ``DistributedDataParallel``: it takes no gradients).
    """
    if teacher is None:
        yield None
        return
    teacher.requires_grad_(False)
    nn.Module.train(teacher, False)
    previous = teacher.__dict__.get("train")

    def train(mode: bool = True) -> nn.Module:
        return nn.Module.train(teacher, False)

    object.__setattr__(teacher, "train", train)
    try:
        yield teacher
    finally:
        if previous is None:
            teacher.__dict__.pop("train", None)
        else:
            object.__setattr__(teacher, "train", previous)
        nn.Module.train(teacher, False)


def check_not_shared(student: nn.Module, teacher: nn.Module) -> None:
    """Refuse a teacher that is the student or shares parameter tensors with it."""
    if teacher is student:
        raise ValueError("teacher and student are the same module; pass the float model")
    student_params = {id(p) for p in student.parameters()}
    if any(id(p) in student_params for p in teacher.parameters()):
        raise ValueError(
            "teacher and student share parameter tensors, so freezing the teacher would freeze "
            "the student; pass a separate copy of the float model as teacher"
        )
