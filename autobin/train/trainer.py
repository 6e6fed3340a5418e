"""One training run, :class:`Trainer`: set-up, the epoch loop, evaluation, saving each epoch.

Called by :mod:`.loop`. What a checkpoint holds and how a run resumes from one is
:mod:`.checkpoint`; ``metrics.json`` and the run directory are :mod:`.outputs`; the per-batch
evaluation sums are :mod:`.evaluation`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .callbacks import LoopState, call_hook
from .checkpoint import (
    Progress,
    checkpoint_state,
    resume_path,
    resume_run,
    save_checkpoint,
    seed_everything,
)
from .config import TrainConfig
from .device import autocast, compiled, resolve_precision, to_input, uses_channels_last
from .distributed import Ranks, wrap_ddp
from .errors import NonFiniteLossError, TrainWarning
from .evaluation import eval_sums
from .losses import DistillationLoss, FeatureTaps, match_module_names
from .outputs import (
    BEST,
    LAST,
    METRICS,
    RUN,
    FinetuneResult,
    console_is_terminal,
    epoch_summary,
    metrics_doc,
    write_strict_json,
)
from .sampling import DataSource, check_labels, collate_checked
from .schedules import apply_epoch_schedule, build_optimizer, build_scheduler, unwrap_model
from .teacher import frozen_teacher


def warn_non_finite_validation(record: dict[str, Any], main: bool) -> None:
    """Warn (on rank 0) when an epoch's validation loss is NaN or infinite."""
    loss = record.get("val_loss")
    if main and loss is not None and not math.isfinite(loss):
        warnings.warn(
            f"epoch {record['epoch']}: the validation loss is {loss}: the model's output is not "
            "finite on some validation items (NaN or infinite values in the validation data, "
            "or weights diverging: check the data, lower the learning rate); metrics.json "
            "records it as null",
            TrainWarning,
            stacklevel=2,
        )


class Trainer:
    """State of one run; :meth:`run` executes it."""

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module | None,
        train: DataSource,
        val: DataSource | None,
        config: TrainConfig,
        *,
        kind: str,
        out_dir: Path,
        callbacks: Sequence[Any],
        metadata: dict[str, Any],
        run_info: dict[str, Any] | None,
        ranks: Ranks,
        device: torch.device,
    ) -> None:
        self.model = model
        self.net = unwrap_model(model)
        self.teacher = teacher
        self.train_data, self.val_data = train, val
        self.config = config
        self.kind = kind
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.metadata = metadata
        self.run_info = run_info
        self.ranks = ranks
        self.device = device
        self.amp_dtype = resolve_precision(config, device)
        self.channels_last = uses_channels_last(config, device)
        self.bars = config.progress and ranks.main and console_is_terminal()
        self.lines = config.progress and ranks.main and not self.bars
        self.loss_fn = DistillationLoss(
            config.kd_weight, config.ce_weight, config.feature_weight, config.temperature
        )
        self.history: list[dict[str, Any]] = []
        self.best_val_acc: float | None = None
        self.best_epoch: int | None = None
        self.start_epoch = 0
        self.step = 0
        self.plots: dict[str, Path] = {}
        self.student_taps = self.teacher_taps = None

    # ----------------------------------------------------------------- setup
    def _setup(self, resume: bool | str | Path) -> None:
        seed_everything(self.config.seed)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        self.net.to(self.device, memory_format=layout)
        if self.teacher is not None:
            self.teacher.to(self.device, memory_format=layout)
        batch = self.config.batch_size
        self.steps_per_epoch = self.train_data.steps(batch, self.ranks)
        self.optimizer = build_optimizer(self.net, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch, self.config)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        path = resume_path(self.out_dir, resume)
        if path is not None:
            progress = resume_run(
                path, kind=self.kind, config=self.config, steps_per_epoch=self.steps_per_epoch,
                ranks=self.ranks, model=self.net, optimizer=self.optimizer,
                scheduler=self.scheduler, scaler=self.scaler,
            )  # fmt: skip
            self.start_epoch, self.step, self.history, self.best_val_acc, self.best_epoch = progress
        wrapped = self.model
        if self.ranks.active and not isinstance(wrapped, nn.parallel.DistributedDataParallel):
            wrapped = wrap_ddp(self.net, self.device, sync_bn=self.config.sync_bn)
        self.forward_model = compiled(wrapped) if self.config.compile else wrapped
        if self.ranks.main and self.run_info is not None:
            write_strict_json(self.out_dir / RUN, self.run_info)

    # ----------------------------------------------------------------- steps
    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor, batch_indices, index: int):
        teacher_logits = teacher_feats = None
        with autocast(self.device, self.amp_dtype):
            if self.teacher is not None and self.loss_fn.needs_teacher:
                nn.Module.train(self.teacher, False)
                with torch.no_grad():
                    teacher_logits = self.teacher(x)
                teacher_feats = self.teacher_taps.pop() if self.teacher_taps else None
            logits = self.forward_model(x)
            student_feats = self.student_taps.pop() if self.student_taps else None
        check_labels(y, logits.shape[-1], batch_indices, "train_data", index)
        terms = self.loss_fn(logits, y, teacher_logits, student_feats, teacher_feats)
        return logits, terms

    def _fetch(self, batches: Any, indices: list[int] | None, index: int, what: str):
        x, y = collate_checked(next(batches), what, index)
        x = to_input(x, self.device, self.channels_last)
        y = y.to(self.device, non_blocking=True)
        first = index * self.config.batch_size
        return x, y, (indices[first : first + len(y)] if indices else None)

    def _checked_step_loss(self, batches, indices, index: int, epoch: int):
        """Fetch a batch and compute its loss, agreeing with every rank on failures."""
        error = None
        try:
            x, y, batch_indices = self._fetch(batches, indices, index, "train_data")
        except Exception as exc:  # every rank must reach the agreement below
            error = exc
        self.ranks.agree(error, self.device, f"loading training batch {index} of epoch {epoch + 1}")
        try:
            logits, terms = self._forward_loss(x, y, batch_indices, index)
            value = float(terms.total.detach())
        except Exception as exc:
            error, value = exc, math.nan
        self.ranks.agree(error, self.device, f"in training step {self.step + 1}")
        values = self.ranks.gather(value, self.device)
        bad = [rank for rank, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            last = self.out_dir / LAST
            checkpoint = last if self.history and last.is_file() else None
            if self.ranks.rank in bad:  # each failing rank reports its own value
                raise NonFiniteLossError(epoch + 1, self.step + 1, value, checkpoint)
            theirs = NonFiniteLossError(epoch + 1, self.step + 1, values[bad[0]], checkpoint)
            where = f"in training step {self.step + 1}"
            raise self.ranks.failed_elsewhere(bad[0], where, f"NonFiniteLossError: {theirs}")
        return y, logits, terms, value

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        self.model.train()
        self.net.train()
        loader, indices = self.train_data.train_batches(
            self.config.batch_size, self.config.num_workers, self.config.seed, epoch,
            self.ranks, self.device.type == "cuda",
        )  # fmt: skip
        sums = {"loss": 0.0, "correct": 0.0, "n": 0.0}
        part_sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.config.epochs} "
                   "train", disable=not self.bars, leave=False, dynamic_ncols=True)  # fmt: skip
        batches = iter(loader)
        for batch_index in range(self.steps_per_epoch):
            y, logits, terms, value = self._checked_step_loss(batches, indices, batch_index, epoch)
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
            if self.bars:
                rate = sums["n"] * self.ranks.world / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.4f}",
                                acc=f"{100 * sums['correct'] / sums['n']:.2f}",
                                img_s=f"{rate:.0f}", refresh=False)  # fmt: skip
                bar.update()
            state = LoopState(epoch, self.step, batch_index, value, self.model, self.optimizer,
                              self.config)  # fmt: skip
            call_hook(self.callbacks, "on_step_end", state)
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
        batch = self.config.eval_batch_size or 2 * self.config.batch_size
        loader, indices = self.val_data.eval_batches(
            batch, self.config.num_workers, self.ranks, self.device.type == "cuda"
        )
        error, sums = None, [0.0, 0.0, 0.0]
        try:
            sums = eval_sums(self.net, loader, self.device, self.amp_dtype, self.bars,
                             self.channels_last, indices)  # fmt: skip
        except Exception as exc:
            error = exc
        finally:
            if self.student_taps:
                self.student_taps.pop()
        self.ranks.agree(error, self.device, "in evaluation")
        loss_sum, correct, n = self.ranks.sum(sums, self.device)
        return {"val_loss": loss_sum / max(n, 1.0), "val_acc": 100.0 * correct / max(n, 1.0)}

    # ----------------------------------------------------------------- files
    def _checkpoint_state(self, epoch_done: int) -> dict[str, Any]:
        progress = Progress(epoch_done, self.step, self.history, self.best_val_acc, self.best_epoch)
        return checkpoint_state(
            progress, kind=self.kind, steps_per_epoch=self.steps_per_epoch, model=self.net,
            optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
            config=self.config, world_size=self.ranks.world, metadata=self.metadata,
        )  # fmt: skip

    def _metrics_doc(self) -> dict[str, Any]:
        return metrics_doc(
            kind=self.kind, history=self.history, best_val_acc=self.best_val_acc,
            best_epoch=self.best_epoch, world_size=self.ranks.world, config=self.config,
            metadata=self.metadata,
        )  # fmt: skip

    def _save_epoch(self, epoch_done: int, improved: bool) -> None:
        if self.ranks.main:
            state = self._checkpoint_state(epoch_done)
            save_checkpoint(self.out_dir / LAST, state)
            if improved:
                save_checkpoint(self.out_dir / BEST, state)
            write_strict_json(self.out_dir / METRICS, self._metrics_doc())
        self.ranks.barrier()

    # ----------------------------------------------------------------- run
    def _attach_taps(self) -> None:
        if self.config.feature_weight <= 0:
            return
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

    def run(self, resume: bool | str | Path) -> FinetuneResult:
        """Train the remaining epochs and write the outputs."""
        self._setup(resume)
        self._attach_taps()
        try:
            with frozen_teacher(self.teacher):
                for epoch in range(self.start_epoch, self.config.epochs):
                    self._run_epoch(epoch)
                self._finish()
        finally:
            for taps in (self.student_taps, self.teacher_taps):
                if taps is not None:
                    taps.remove()
        return self._result()

    def _run_epoch(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        phase = apply_epoch_schedule(self.net, self.optimizer, epoch, self.config)
        state = LoopState(epoch, self.step, -1, math.nan, self.model, self.optimizer, self.config)
        call_hook(self.callbacks, "on_epoch_start", state)
        lr = self.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.step, "lr": lr}
        record.update(self._train_epoch(epoch))
        record.update(self.evaluate())
        warn_non_finite_validation(record, self.ranks.main)
        record["step"] = self.step
        self.history.append(record)
        # Without validation data "best" is the latest epoch (so every run can be published).
        improved = self.val_data is None or (
            math.isfinite(record["val_acc"])
            and (self.best_val_acc is None or record["val_acc"] > self.best_val_acc)
        )
        if improved and "val_acc" in record:
            self.best_val_acc, self.best_epoch = record["val_acc"], epoch + 1
        self._save_epoch(epoch + 1, improved)
        if self.bars:
            tqdm.write(epoch_summary(record, self.config.epochs))
        elif self.lines:
            print(epoch_summary(record, self.config.epochs), flush=True)
        state.metrics, state.step = record, self.step
        call_hook(self.callbacks, "on_epoch_end", state)

    def _finish(self) -> None:
        if self.ranks.main and not (self.out_dir / LAST).is_file():
            # Resumed a finished run from a checkpoint elsewhere, or nothing ran: write one.
            save_checkpoint(self.out_dir / LAST, self._checkpoint_state(len(self.history)))
        if self.ranks.main:
            write_strict_json(self.out_dir / METRICS, self._metrics_doc())
            if self.config.plots and self.history:
                from .plots import plot_binary_sets, plot_curves

                self.plots["curves"] = plot_curves(self.history, self.out_dir / "curves.png")
                val = self.val_data.dataset if self.val_data is not None else None
                path = plot_binary_sets(self.net, val, self.out_dir / "binary_sets.png",
                                        self.device)  # fmt: skip
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
