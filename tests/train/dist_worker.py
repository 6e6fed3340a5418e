"""Worker run by the distributed tests, under torchrun or as a single process.

    python dist_worker.py MODE OUT [options]     (single process)
    torchrun --nproc_per_node=2 dist_worker.py MODE OUT [options]

Modes:
    pipeline  - ``autobin train``'s workflow (:func:`autobin.pipelines.train_binary`) with a
                given teacher; every rank saves its student's parameters to OUT/params/rankR.pt.
    finetune  - :func:`autobin.finetune` on a slice of mnist5k, resuming from OUT/run when it
                holds a checkpoint; ``--stop-after E`` stops every rank after epoch E.
    bad-label - finetune on data where the first item rank 1 of 2 loads has label 10 of 10.
    sync-bn   - finetune with ``sync_bn: true`` on the CPU (refused: SyncBatchNorm needs CUDA).
    nan-image - finetune on data where the first item rank 1 of 2 loads is an all-NaN image.
    uneven    - finetune where rank 1 passes one training item less than rank 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import timm
import torch
from torch.utils.data import Dataset

import autobin
from autobin.data import load_dataset
from autobin.pipelines import train_binary
from autobin.train import Callback, Ranks, finetune, load_checkpoint
from autobin.train.sampling import epoch_indices

DATA = "mnist5k[:512]"


class StopAfter(Callback):
    """Ends the run on every rank right after epoch ``epoch`` was checkpointed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state) -> None:
        if state.epoch + 1 == self.epoch:
            raise SystemExit(0)


class OneBadLabel(Dataset):
    def __init__(self, data: Dataset, index: int) -> None:
        self.data, self.index = data, index

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, y = self.data[i]
        return x, (10 if i == self.index else y)


class OneNaNImage(OneBadLabel):
    def __getitem__(self, i: int):
        x, y = self.data[i]
        return (torch.full_like(x, float("nan")) if i == self.index else x), y


def first_item_of_rank1(n: int) -> int:
    """The first training item rank 1 of 2 loads (seed 0, epoch 0)."""
    return epoch_indices(n, 0, 0, Ranks(1, 2))[0]


def _teacher(path: str) -> torch.nn.Module:
    model = timm.create_model("resnet10t", num_classes=10, in_chans=1)
    model.load_state_dict(load_checkpoint(Path(path) / "last.pt")["model"])
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "mode", choices=["pipeline", "finetune", "bad-label", "sync-bn", "nan-image", "uneven"]
    )
    ap.add_argument("out")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stop-after", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    config = {"batch_size": args.batch, "lr": 2e-3, "plots": False, "progress": True}
    rank = int(os.environ.get("RANK", "0"))
    if args.mode == "sync-bn":
        config["sync_bn"] = True
    if args.mode == "pipeline":
        result = train_binary("resnet10t", data=DATA, epochs=args.epochs, teacher=args.teacher,
                              out_dir=out / "run", config=config)  # fmt: skip
        params = {k: v.detach().clone() for k, v in result.student.named_parameters()}
        (out / "params").mkdir(parents=True, exist_ok=True)
        torch.save(params, out / "params" / f"rank{rank}.pt")
        return
    teacher = _teacher(args.teacher)
    student = autobin.binarize(teacher, example_inputs=(torch.zeros(2, 1, 28, 28),))
    train, val = load_dataset(DATA, "train"), load_dataset(DATA, "test")
    if args.mode == "bad-label":
        train = OneBadLabel(train, first_item_of_rank1(len(train)))
    if args.mode == "nan-image":
        train = OneNaNImage(train, first_item_of_rank1(len(train)))
    if args.mode == "uneven":
        train = torch.utils.data.Subset(train, range(len(train) - rank))
    callbacks = [StopAfter(args.stop_after)] if args.stop_after else []
    finetune(student, teacher, train, val, epochs=args.epochs, config=config,
             out_dir=out / "run", resume=True, callbacks=callbacks)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
