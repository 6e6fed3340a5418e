"""The training loop shared by :func:`autobin.train.finetune` and ``train_float``.

Guarantees:

* Determinism: the data order of epoch ``e`` depends only on ``(seed, e)`` (a seeded
  ``torch.Generator`` per epoch); model-side randomness comes from the seeded global generators.
* Exact resume: every epoch ends with an atomic ``last.pt`` holding model, optimizer, scheduler,
  gradient scaler, RNG states, counters and metrics. Resuming from it replays the remaining
  epochs exactly as an uninterrupted run would (single process).
* A non-finite loss stops the run with :class:`NonFiniteLossError` before the bad update; the
  last checkpoint on disk is the last good state.
* Several processes: with ``torch.distributed`` initialized, each rank trains on its shard of
  every epoch's permutation, metrics are summed over ranks, and only rank 0 writes files and
  shows progress bars. The student may be wrapped in ``DistributedDataParallel``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..atomic import write_json
from .checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from .config import TrainConfig
from .losses import DistillationLoss, FeatureTaps, match_module_names
from .schedules import apply_epoch_schedule, build_optimizer, build_scheduler, unwrap_model

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"

# Config keys that may change between an interrupted run and its resumption without a warning.
_RESUME_FREE_KEYS = {"progress", "plots", "num_workers", "device", "eval_batch_size"}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped before applying the update.

    Attributes:
        epoch: 1-based epoch in which it happened.
        step: 1-based global optimizer step that would have been taken.
        value: the loss value.
        checkpoint: the last good checkpoint kept on disk, or ``None`` if none was written yet.
    """

    def __init__(self, epoch: int, step: int, value: float, checkpoint: Path | None) -> None:
        self.epoch, self.step, self.value, self.checkpoint = epoch, step, value, checkpoint
        if checkpoint is not None:
            kept = (
                f"The last good checkpoint {str(checkpoint)!r} is kept; lower the learning "
                "rate or check the data, then resume from it with resume=True."
            )
        else:
            kept = "No checkpoint was written yet (the failure is in the first epoch)."
        super().__init__(
            f"non-finite training loss ({value}) at epoch {epoch}, step {step}; training "
            f"stopped before this update. {kept}"
        )


@dataclass
class LoopState:
    """What callbacks see. ``epoch`` is 0-based; ``step`` counts optimizer steps taken."""

    epoch: int
    step: int
    batch_index: int
    loss: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    metrics: dict[str, float] = field(default_factory=dict)


class Callback:
    """Hooks into the loop; override any of them. Raising stops the run (no checkpoint)."""

    def on_epoch_start(self, state: LoopState) -> None:
        """Before the first batch of an epoch (after the binarization schedule is applied)."""

    def on_step_end(self, state: LoopState) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, state: LoopState) -> None:
        """After evaluation and checkpointing; ``state.metrics`` holds the epoch's record."""


@dataclass
class FinetuneResult:
    """Outcome of a training run.

    Attributes:
        best_val_acc: best top-1 validation accuracy in percent (``None`` without val data).
        best_epoch: 1-based epoch of ``best_val_acc``.
        final_val_acc: top-1 validation accuracy after the last epoch.
        history: one record per epoch (losses, accuracies, lr, throughput, phase).
        out_dir: output directory.
        last_checkpoint: path of ``last.pt``.
        best_checkpoint: path of ``best.pt`` (``None`` without val data).
        metrics_path: path of ``metrics.json``.
        plots: written figures by name (``"curves"``, ``"binary_sets"``).
    """

    best_val_acc: float | None
    best_epoch: int | None
    final_val_acc: float | None
    history: list[dict[str, Any]]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics_path: Path
    plots: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- environment
@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @staticmethod
    def detect() -> _Dist:
        if dist.is_available() and dist.is_initialized():
            return _Dist(dist.get_rank(), dist.get_world_size())
        return _Dist()

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def resolve_device(config: TrainConfig, ranks: _Dist | None = None) -> torch.device:
    """The device ``config.device`` names; ``"auto"`` picks CUDA when available."""
    if config.device != "auto":
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {config.device!r} was requested but CUDA is not available; "
                "use device='auto' or 'cpu'"
            )
        return device
    if torch.cuda.is_available():
        if ranks is not None and ranks.active:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_precision(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``None``: fp32, no autocast)."""
    if config.precision == "fp32":
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --------------------------------------------------------------------------- data
def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator whose stream depends only on ``(seed, epoch)``."""
    state = np.random.SeedSequence([seed % 2**32, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def epoch_indices(n: int, seed: int, epoch: int, ranks: _Dist) -> list[int]:
    """This rank's share of the seeded permutation of epoch ``epoch``.

    The permutation is padded (by wrapping around) to a multiple of the world size so every
    rank takes the same number of steps.
    """
    perm = torch.randperm(n, generator=epoch_generator(seed, epoch)).tolist()
    if ranks.world > 1:
        total = math.ceil(n / ranks.world) * ranks.world
        perm = (perm * math.ceil(total / max(n, 1)))[:total]
    return perm[ranks.rank :: ranks.world]


def _train_loader(
    data: Dataset, config: TrainConfig, epoch: int, ranks: _Dist, device: torch.device
) -> DataLoader:
    indices = epoch_indices(len(data), config.seed, epoch, ranks)
    drop_last = len(indices) >= config.batch_size
    generator = epoch_generator(config.seed + 1, epoch)  # worker seeds of this epoch
    return DataLoader(
        data,
        batch_size=config.batch_size,
        sampler=indices,
        drop_last=drop_last,
        num_workers=config.num_workers,
        generator=generator,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _steps_per_epoch(n: int, config: TrainConfig, ranks: _Dist) -> int:
    shard = math.ceil(n / ranks.world)
    return shard // config.batch_size if shard >= config.batch_size else 1


def _eval_loader(data: Dataset, config: TrainConfig, ranks: _Dist, device: torch.device):
    indices = list(range(ranks.rank, len(data), ranks.world))
    return DataLoader(
        data,
        batch_size=config.eval_batch_size or 2 * config.batch_size,
        sampler=indices,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )


# --------------------------------------------------------------------------- teacher
@contextlib.contextmanager
def frozen_teacher(teacher: nn.Module | None) -> Iterator[nn.Module | None]:
    """Freeze ``teacher`` (no gradients) and pin it to eval mode for the duration.

    ``teacher.train()`` (including the call a parent module's ``.train()`` makes) keeps it in
    eval mode while the context is active. The teacher stays frozen and in eval mode afterwards.
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


def _check_not_shared(student: nn.Module, teacher: nn.Module) -> None:
    if teacher is student:
        raise ValueError("teacher and student are the same module; pass the float model")
    student_params = {id(p) for p in student.parameters()}
    if any(id(p) in student_params for p in teacher.parameters()):
        raise ValueError(
            "teacher and student share parameter tensors, so freezing the teacher would freeze "
            "the student; pass a separate copy of the float model as teacher"
        )


# --------------------------------------------------------------------------- engine
def _sync_callbacks(callbacks: Sequence[Any], hook: str, state: LoopState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


class _Trainer:
    """State of one run; :meth:`run` executes it."""

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module | None,
        train_data: Dataset,
        val_data: Dataset | None,
        config: TrainConfig,
        *,
        kind: str,
        out_dir: Path,
        callbacks: Sequence[Any],
        metadata: dict[str, Any],
    ) -> None:
        self.model = model
        self.net = unwrap_model(model)
        self.teacher = teacher
        self.train_data, self.val_data = train_data, val_data
        self.config = config
        self.kind = kind
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.metadata = metadata
        self.ranks = _Dist.detect()
        self.device = resolve_device(config, self.ranks)
        self.amp_dtype = resolve_precision(config, self.device)
        self.loss_fn = DistillationLoss(
            config.kd_weight, config.ce_weight, config.feature_weight, config.temperature
        )
        self.history: list[dict[str, Any]] = []
        self.best_val_acc: float | None = None
        self.best_epoch: int | None = None
        self.start_epoch = 0
        self.step = 0
        self.plots: dict[str, Path] = {}

    # ----------------------------------------------------------------- setup
    def _setup(self, resume: bool | str | Path) -> None:
        seed_everything(self.config.seed)
        if not isinstance(self.model, nn.parallel.DistributedDataParallel):
            self.model.to(self.device)
        if self.teacher is not None:
            self.teacher.to(self.device)
        self.steps_per_epoch = _steps_per_epoch(len(self.train_data), self.config, self.ranks)
        self.optimizer = build_optimizer(self.net, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch, self.config)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        path = self._resume_path(resume)
        if path is not None:
            self._load(path)

    def _resume_path(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            path = self.out_dir / LAST
            if not path.is_file():
                warnings.warn(
                    f"resume=True but {str(path)!r} does not exist; starting a fresh run",
                    stacklevel=4,
                )
                return None
            return path
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"resume checkpoint {str(path)!r} does not exist")
        return path

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        if state.get("kind") != self.kind:
            raise ValueError(
                f"{str(path)!r} is a {state.get('kind')!r} checkpoint; cannot resume a "
                f"{self.kind!r} run from it"
            )
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(
                f"cannot resume from {str(path)!r}: it ran {state['steps_per_epoch']} steps per "
                f"epoch, this run has {self.steps_per_epoch} (different data or batch_size)"
            )
        changed = sorted(
            k
            for k, v in self.config.to_dict().items()
            if k not in _RESUME_FREE_KEYS and state["config"].get(k) != v
        )
        if changed:
            warnings.warn(
                f"resuming from {str(path)!r} with a different training config ({changed}); "
                "the result will differ from an uninterrupted run",
                stacklevel=4,
            )
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        self.best_val_acc, self.best_epoch = state["best_val_acc"], state["best_epoch"]

    # ----------------------------------------------------------------- steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor):
        teacher_logits = teacher_feats = None
        with self._autocast():
            if self.teacher is not None and self.loss_fn.needs_teacher:
                nn.Module.train(self.teacher, False)
                with torch.no_grad():
                    teacher_logits = self.teacher(x)
                teacher_feats = self.teacher_taps.pop() if self.teacher_taps else None
            logits = self.model(x)
            student_feats = self.student_taps.pop() if self.student_taps else None
        terms = self.loss_fn(logits, y, teacher_logits, student_feats, teacher_feats)
        return logits, terms

    def _check_finite(self, loss: torch.Tensor, epoch: int) -> float:
        value = float(loss.detach())
        bad = not math.isfinite(value)
        if self.ranks.active:
            flag = torch.tensor([float(bad)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bool(flag.item())
        if bad:
            last = self.out_dir / LAST
            raise NonFiniteLossError(
                epoch + 1, self.step + 1, value, last if self.history and last.is_file() else None
            )
        return value

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        self.model.train()
        loader = _train_loader(self.train_data, self.config, epoch, self.ranks, self.device)
        sums = {"loss": 0.0, "correct": 0.0, "n": 0.0}
        part_sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.epochs} train",
            disable=not (self.ranks.main and self.config.progress),
            leave=False,
            dynamic_ncols=True,
        )
        for batch_index, (x, y) in enumerate(bar):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            logits, terms = self._forward_loss(x, y)
            value = self._check_finite(terms.total, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(terms.total).backward()
            if self.config.grad_clip_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            n = float(y.shape[0])
            sums["loss"] += value * n
            sums["correct"] += float((logits.detach().argmax(-1) == y).sum())
            sums["n"] += n
            for name, part in terms.parts.items():
                part_sums[name] = part_sums.get(name, 0.0) + float(part.detach()) * n
            rate = sums["n"] * self.ranks.world / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{sums['loss'] / sums['n']:.4f}",
                acc=f"{100 * sums['correct'] / sums['n']:.2f}",
                img_s=f"{rate:.0f}",
                refresh=False,
            )
            state = LoopState(epoch, self.step, batch_index, value, self.model, self.optimizer,
                              self.config)  # fmt: skip
            _sync_callbacks(self.callbacks, "on_step_end", state)
        bar.close()
        elapsed = time.perf_counter() - start
        keys = sorted(part_sums)
        totals = self.ranks.sum(
            [sums["loss"], sums["correct"], sums["n"], *(part_sums[k] for k in keys)], self.device
        )
        n_all = max(totals[2], 1.0)
        record = {
            "train_loss": totals[0] / n_all,
            "train_acc": 100.0 * totals[1] / n_all,
            "train_img_per_s": totals[2] / max(elapsed, 1e-9),
            "train_time_s": elapsed,
        }
        record.update({f"train_{k}": v / n_all for k, v in zip(keys, totals[3:])})
        return record

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Top-1 accuracy (percent) and cross-entropy of the student on the validation data."""
        if self.val_data is None:
            return {}
        self.net.eval()
        loader = _eval_loader(self.val_data, self.config, self.ranks, self.device)
        show = self.ranks.main and self.config.progress
        sums = _eval_sums(self.net, loader, self.device, self._autocast, show)
        if self.student_taps:
            self.student_taps.pop()
        loss_sum, correct, n = self.ranks.sum(sums, self.device)
        return {"val_loss": loss_sum / max(n, 1.0), "val_acc": 100.0 * correct / max(n, 1.0)}

    # ----------------------------------------------------------------- files
    def _checkpoint_state(self, epoch_done: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": self.kind,
            "epoch": epoch_done,
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "config": self.config.to_dict(),
            "world_size": self.ranks.world,
            **self.metadata,
        }

    def _metrics_doc(self) -> dict[str, Any]:
        final = self.history[-1].get("val_acc") if self.history else None
        return {
            "kind": self.kind,
            "epochs_done": len(self.history),
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "final_val_acc": final,
            "history": self.history,
            "config": self.config.to_dict(),
            **self.metadata,
        }

    def _save_epoch(self, epoch_done: int, improved: bool) -> None:
        if self.ranks.main:
            state = self._checkpoint_state(epoch_done)
            save_checkpoint(self.out_dir / LAST, state)
            if improved:
                save_checkpoint(self.out_dir / BEST, state)
            write_json(self.out_dir / METRICS, self._metrics_doc())
        self.ranks.barrier()

    # ----------------------------------------------------------------- run
    def run(self, resume: bool | str | Path) -> FinetuneResult:
        """Train the remaining epochs and write the outputs."""
        from tqdm.auto import tqdm

        self._setup(resume)
        self.student_taps = self.teacher_taps = None
        if self.config.feature_weight > 0:
            names = match_module_names(self.net, self.config.feature_layers)
            teacher_names = dict(self.teacher.named_modules())  # type: ignore[union-attr]
            missing = [n for n in names if n not in teacher_names]
            if missing:
                raise ValueError(
                    f"feature layers {missing} exist in the student but not in the teacher; "
                    "choose modules present in both (binarization keeps module names)"
                )
            self.student_taps = FeatureTaps(self.net, names)
            self.teacher_taps = FeatureTaps(self.teacher, names)  # type: ignore[arg-type]
        try:
            with frozen_teacher(self.teacher):
                for epoch in range(self.start_epoch, self.config.epochs):
                    phase = apply_epoch_schedule(self.net, self.optimizer, epoch, self.config)
                    state = LoopState(epoch, self.step, -1, math.nan, self.model, self.optimizer,
                                      self.config)  # fmt: skip
                    _sync_callbacks(self.callbacks, "on_epoch_start", state)
                    lr = self.optimizer.param_groups[0]["lr"]
                    record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.step, "lr": lr}
                    record.update(self._train_epoch(epoch))
                    record.update(self.evaluate())
                    record["step"] = self.step
                    self.history.append(record)
                    improved = "val_acc" in record and (
                        self.best_val_acc is None or record["val_acc"] > self.best_val_acc
                    )
                    if improved:
                        self.best_val_acc, self.best_epoch = record["val_acc"], epoch + 1
                    self._save_epoch(epoch + 1, improved)
                    if self.ranks.main and self.config.progress:
                        tqdm.write(_summary(record, self.config.epochs))
                    state.metrics, state.step = record, self.step
                    _sync_callbacks(self.callbacks, "on_epoch_end", state)
                self._finish()
        finally:
            for taps in (self.student_taps, self.teacher_taps):
                if taps is not None:
                    taps.remove()
        return self._result()

    def _finish(self) -> None:
        if self.ranks.main and not (self.out_dir / LAST).is_file():
            # Resumed a finished run from a checkpoint elsewhere, or nothing ran: write one.
            save_checkpoint(self.out_dir / LAST, self._checkpoint_state(len(self.history)))
        if self.ranks.main:
            write_json(self.out_dir / METRICS, self._metrics_doc())
            if self.config.plots and self.history:
                from .plots import plot_binary_sets, plot_curves

                self.plots["curves"] = plot_curves(self.history, self.out_dir / "curves.png")
                path = plot_binary_sets(
                    self.net, self.val_data, self.out_dir / "binary_sets.png", self.device
                )
                if path is not None:
                    self.plots["binary_sets"] = path
        self.ranks.barrier()

    def _result(self) -> FinetuneResult:
        best = self.out_dir / BEST
        return FinetuneResult(
            best_val_acc=self.best_val_acc,
            best_epoch=self.best_epoch,
            final_val_acc=self.history[-1].get("val_acc") if self.history else None,
            history=list(self.history),
            out_dir=self.out_dir,
            last_checkpoint=self.out_dir / LAST,
            best_checkpoint=best if best.is_file() else None,
            metrics_path=self.out_dir / METRICS,
            plots=dict(self.plots),
        )


@torch.no_grad()
def _eval_sums(
    model: nn.Module, loader: Any, device: torch.device, autocast: Any, progress: bool
) -> list[float]:
    """``[sum of cross-entropy, correct top-1, count]`` of ``model`` over ``loader``."""
    from tqdm.auto import tqdm

    loss_sum = correct = n = 0.0
    for x, y in tqdm(loader, desc="eval", disable=not progress, leave=False, dynamic_ncols=True):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += float((logits.argmax(-1) == y).sum())
        n += y.shape[0]
    return [loss_sum, correct, n]


def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``data`` (fp32, eval mode).

    The model's train/eval mode is restored afterwards.

    Args:
        model: a classifier returning ``(N, num_classes)`` logits.
        data: a dataset of ``(image, label)`` pairs.
        batch_size: evaluation batch size.
        device: where to run; ``None`` uses the device of the model's first parameter.
        num_workers: DataLoader workers.
        progress: show a progress bar.

    Returns:
        ``{"acc": top-1 percent, "loss": mean cross-entropy, "n": sample count}``.
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct, n = _eval_sums(model, loader, device, contextlib.nullcontext, progress)
    finally:
        model.train(was_training)
    return {"acc": 100.0 * correct / max(n, 1.0), "loss": loss_sum / max(n, 1.0), "n": n}


def _summary(record: dict[str, Any], epochs: int) -> str:
    text = (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.2f}% ({record['train_img_per_s']:.0f} img/s)"
    )
    if "val_acc" in record:
        text += f" | val loss {record['val_loss']:.4f} acc {record['val_acc']:.2f}%"
    return text


def run_training(
    model: nn.Module,
    teacher: nn.Module | None,
    train_data: Dataset,
    val_data: Dataset | None,
    config: TrainConfig,
    *,
    kind: str,
    out_dir: str | Path,
    resume: bool | str | Path = False,
    callbacks: Sequence[Any] = (),
    metadata: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Run the shared loop (see the module docstring). Public entry points wrap this."""
    if teacher is not None:
        _check_not_shared(unwrap_model(model), teacher)
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    trainer = _Trainer(
        model,
        teacher,
        train_data,
        val_data,
        config,
        kind=kind,
        out_dir=Path(out_dir),
        callbacks=callbacks,
        metadata=metadata or {},
    )
    return trainer.run(resume)
