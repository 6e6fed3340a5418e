"""Train and test mmdet configs with mmengine's Runner (what mmdet's tools/train.py and
tools/test.py do), for float and binarized detectors alike.

On top of mmdet's tools: pretrained downloads are removed from the model config (offline), the
VOC data roots are checked before anything runs, heads hit by mmdet 3.3.0's predict bug are
fixed on the built model, the checkpoints it resumes from or evaluates load as mmengine
expects (see :func:`.offline.mmengine_checkpoints`), and a run that fails while being set up
leaves no new files in the work dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...data.mnist_det import check_voc_root
from .errors import MMDetIntegrationError
from .offline import (
    fix_predict,
    load_checkpoint_file,
    mmengine_checkpoints,
)

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def _voc_roots(cfg: Any) -> set[tuple[str, str]]:
    roots: set[tuple[str, str]] = set()

    def walk(d: Any) -> None:
        if isinstance(d, Mapping):
            if d.get("type") == "VOCDataset" and d.get("data_root"):
                sub = (d.get("data_prefix") or {}).get("sub_data_root", "")
                roots.add((str(d["data_root"]), str(sub)))
            for v in d.values():
                walk(v)
        elif isinstance(d, (list, tuple)):
            for v in d:
                walk(v)

    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        walk(cfg.get(key))
    return roots


def check_option_keys(cfg: Any, options: Mapping[str, Any]) -> None:
    """Refuse a ``--cfg-options`` key that misspells one of the config's keys.

    mmengine adds an unknown key silently, so ``train_cfg.max_epoch=2`` would train for the
    config's own number of epochs. A key that is new but close to no existing key is allowed
    (configs legitimately gain new keys).
    """
    from ...errors import did_you_mean

    tree = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg  # an mmengine Config, or a dict
    for key in options:
        node: Any = tree
        parts = key.split(".")
        for i, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, Mapping):
                break
            if part in node:
                node = node[part]
                continue
            close = did_you_mean(part, [str(k) for k in node])
            if close is not None:
                where = ".".join(parts[: i + 1])
                raise MMDetIntegrationError(
                    f"--cfg-options {key}: the config has no {where!r} ({close}); mmengine "
                    "would add it as a new key and the intended setting would not change"
                )
            break


def prepare_config(
    config: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
    amp: bool = False,
):
    """Load ``config`` and apply the usual tool flags; return the mmengine ``Config``."""
    from .config import load_config

    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    if launcher == "pytorch":
        from ...train.distributed import torchrun_environment

        if torchrun_environment() is None:
            raise RuntimeError(
                "--launcher pytorch runs under torchrun, which sets WORLD_SIZE, RANK, "
                "LOCAL_RANK, MASTER_ADDR and MASTER_PORT; launch with `torchrun "
                "--nproc_per_node=N -m autobin mmdet-train CONFIG --launcher pytorch`, or drop "
                "--launcher for one process"
            )
    cfg = load_config(config)  # validates the detector and removes pretrained downloads
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(dict(cfg_options))
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(str(config)).stem)
    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    for root, sub in sorted(_voc_roots(cfg)):
        check_voc_root(root, sub)
    if cfg.get("visualizer") is not None:
        # mmengine keeps one visualizer per name for the whole process; a second run in the
        # same process (train then test, a benchmark) would write into the first run's folder
        cfg.visualizer.name = f"visualizer-{uuid.uuid4().hex[:12]}"
    return cfg


@contextlib.contextmanager
def launched(cfg: Any) -> Iterator[None]:
    """The process group of a ``--launcher pytorch`` run on a machine without CUDA.

    mmengine's pytorch launcher assumes GPUs: it pins every process to ``cuda:LOCAL_RANK`` and
    hands DDP that device. Without CUDA the group is set up here instead, from torchrun's
    environment with gloo (mmengine then uses it as is), the model is wrapped in
    ``MMDistributedDataParallel`` without device ids, and the group is destroyed afterwards.
    With CUDA, or another launcher, mmengine does everything itself.
    """
    import torch

    if cfg.launcher != "pytorch" or torch.cuda.is_available():
        yield
        return
    from ...train.distributed import distributed_session

    cfg.env_cfg.dist_cfg = {"backend": "gloo"}
    if cfg.get("model_wrapper_cfg") is None:
        cfg.model_wrapper_cfg = {
            "type": "MMDistributedDataParallel",
            "device_ids": None,  # a CPU module: DDP refuses device ids
            "broadcast_buffers": False,
            "find_unused_parameters": cfg.get("find_unused_parameters", False),
        }
    with distributed_session("cpu"):
        yield


def build_runner(cfg: Any, check: Callable[[Any], None] | None = None):
    """``Runner.from_cfg(cfg)``, then ``check(runner)``; on failure of either, remove what the
    runner created in the work dir."""
    from mmengine.runner import Runner

    work_dir = Path(cfg.work_dir)
    before = set(work_dir.iterdir()) if work_dir.is_dir() else None
    try:
        runner = Runner.from_cfg(cfg)
        if check is not None:
            check(runner)
    except BaseException:
        if before is None:
            shutil.rmtree(work_dir, ignore_errors=True)
        elif work_dir.is_dir():
            for created in set(work_dir.iterdir()) - before:
                shutil.rmtree(created, ignore_errors=True) if created.is_dir() else created.unlink()
        raise
    fix_predict(runner.model)
    return runner


LAST_CHECKPOINT = "last_checkpoint"  # mmengine's pointer to a work dir's latest checkpoint


def check_schedule(cfg: Any, source: str) -> None:
    """Refuse a training schedule of no epochs or iterations (it would 'train' nothing)."""
    train_cfg = cfg.get("train_cfg") or {}
    for key in ("max_epochs", "max_iters"):
        value = train_cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            unit = key.removeprefix("max_")
            raise MMDetIntegrationError(
                f"{source}: train_cfg.{key} is {value!r}; training needs a positive number of "
                f"{unit} (e.g. --cfg-options train_cfg.{key}=12)"
            )


def check_checkpoint_fits(model: Any, keys: set[str], checkpoint: str) -> None:
    """Refuse a checkpoint whose weights are not the model's (another model or a float one):
    evaluating it would silently measure the config's initial weights."""
    model = getattr(model, "module", model)  # a DDP-wrapped model (--launcher pytorch)
    own = set(model.state_dict())
    missing = sorted(own - keys)
    unexpected = sorted(keys - own)
    if missing or unexpected:
        shown = lambda keys: ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")  # noqa: E731
        raise MMDetIntegrationError(
            f"checkpoint {checkpoint} does not fit the config's model: {len(missing)} of its "
            f"{len(own)} weights are missing ({shown(missing) or '-'}) and {len(unexpected)} "
            f"are unexpected ({shown(unexpected) or '-'}); evaluate a checkpoint with the config "
            "it was trained with (a binarized config needs a checkpoint of mmdet-train on it)"
        )


def train(
    config: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    resume: str | bool | None = None,
    launcher: str = "none",
    amp: bool = False,
) -> Path:
    """Train ``config`` with mmengine's Runner; return the work dir.

    Args:
        config: config file (``mmdet::...`` or a path), float or binarized.
        work_dir: where logs and checkpoints go (default: the config's, else
            ``work_dirs/<config name>``).
        cfg_options: ``{dotted.key: value}`` overrides, as ``--cfg-options``.
        resume: ``True``/``"auto"`` resumes from the latest checkpoint of the work dir, a path
            from that checkpoint; None starts afresh.
        launcher: ``none`` (one process), ``pytorch``, ``slurm`` or ``mpi``.
        amp: mixed precision (``AmpOptimWrapper``).
    """
    cfg = prepare_config(config, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher,
                         amp=amp)  # fmt: skip
    check_schedule(cfg, str(config))
    if resume is True or resume == "auto":
        if not (Path(cfg.work_dir) / LAST_CHECKPOINT).is_file():
            raise MMDetIntegrationError(
                f"--resume: {cfg.work_dir} holds no checkpoint to resume (no {LAST_CHECKPOINT} "
                "file of an earlier mmdet-train there); give the --work-dir of the run to "
                "continue, or drop --resume to start afresh"
            )
        cfg.resume, cfg.load_from = True, None
    elif resume:
        if not Path(str(resume)).is_file():
            raise FileNotFoundError(
                f"--resume {resume}: no such checkpoint; give a .pth written by this run or "
                "--resume without a path for the latest one in the work dir"
            )
        cfg.resume, cfg.load_from = True, str(resume)
    with launched(cfg):
        runner = build_runner(cfg)
        with mmengine_checkpoints():
            runner.train()
    return Path(cfg.work_dir)


def test(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
) -> dict[str, float]:
    """Evaluate ``checkpoint`` on the config's test set; return mmengine's metrics dict."""
    keys = set(load_checkpoint_file(checkpoint, "checkpoint"))
    cfg = prepare_config(config, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher)
    cfg.load_from = str(checkpoint)
    with launched(cfg):
        runner = build_runner(
            cfg, check=lambda r: check_checkpoint_fits(r.model, keys, str(checkpoint))
        )
        with mmengine_checkpoints():
            return dict(runner.test())


def parse_cfg_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> dict, with mmengine's ``DictAction`` value parsing."""
    from mmengine.config import DictAction

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--cfg-options takes KEY=VALUE pairs, got {item!r}")
        out[key] = DictAction._parse_iterable(value)
    return out


__all__ = [
    "LAUNCHERS",
    "build_runner",
    "check_checkpoint_fits",
    "check_schedule",
    "parse_cfg_options",
    "prepare_config",
    "test",
    "train",
]
