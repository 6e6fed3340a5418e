"""``autobin train`` and ``autobin.finetune`` under torchrun: gloo on the CPU, loopback only.

Every test launches real processes with ``python -m torch.distributed.run`` (torchrun).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from autobin.train import Ranks, load_checkpoint, train_float
from autobin.train.sampling import epoch_indices

WORKER = Path(__file__).with_name("dist_worker.py")
DATA = "mnist5k[:512]"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("torchrun")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args: str, nproc: int = 2, cwd: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]  # fmt: skip
    return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _single(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    return _finish(proc)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A float resnet10t trained for one epoch on the mnist5k slice (shared by the tests)."""
    out = tmp_path_factory.mktemp("teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=10, in_chans=1)
    train_float(model, DATA, epochs=1, out_dir=out, batch_size=64, progress=False, plots=False,
                overwrite=True)  # fmt: skip
    torch.set_num_threads(threads)
    return out


def _history(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["history"]


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, teacher) -> None:
    two, one = tmp_path / "two", tmp_path / "one"
    _finish(_torchrun(str(WORKER), "pipeline", str(two), "--teacher", str(teacher),
                      "--batch", "32"))  # fmt: skip
    _single(str(WORKER), "pipeline", str(one), "--teacher", str(teacher), "--batch", "64")
    ranks = [torch.load(two / "params" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    learned = [k for k in ranks[0] if k.endswith(("act_alpha", "act_beta", "gamma_pos"))]
    assert learned and any(k.endswith("gamma_neg") for k in ranks[0])
    for key, value in ranks[0].items():  # every parameter, binary sets and Maxout included
        assert torch.equal(value, ranks[1][key]), key
    init_pos = torch.ones_like(ranks[0][next(k for k in learned if k.endswith("gamma_pos"))])
    assert any(  # the learned sets and slopes moved in training, identically on both ranks
        not torch.equal(ranks[0][k], init_pos) for k in learned if k.endswith("gamma_pos")
    )
    state = load_checkpoint(two / "run" / "last.pt")
    assert state["world_size"] == 2 and state["config"]["batch_size"] == 32
    # 512 samples, 2 ranks x 32 per step: 8 steps per epoch, as one process with 64 per step
    assert state["step"] == load_checkpoint(one / "run" / "last.pt")["step"] == 16
    # Same samples in every step (the global batch of step k is the same 64 samples); only
    # BatchNorm statistics differ (per 32-sample shard vs the 64-sample batch). Stated
    # tolerance: the per-epoch training loss agrees within 10 % (measured: 5 % and 1.2 %).
    for a, b in zip(_history(two / "run"), _history(one / "run"), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.10)
    assert (two / "run" / "run.json").is_file() and (two / "run" / "best.pt").is_file()
    assert not list((two / "run").glob(".*.tmp"))


def test_two_nodes_by_two_torchrun_launches(tmp_path, teacher) -> None:
    """``--nnodes=2`` with a c10d rendezvous on the loopback; only rank 0 writes files."""
    config = tmp_path / "train.yaml"
    config.write_text("batch_size: 32\nplots: false\nlr: 0.002\n")
    port = _free_port()
    nodes = []
    for node in range(2):
        cwd = tmp_path / f"node{node}"
        cwd.mkdir()
        nodes.append(cwd)
    rendezvous = ["--nnodes=2", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                  "--rdzv_id=autobin-test"]  # fmt: skip
    train = ["-m", "autobin", "train", "resnet10t", "--data", DATA, "--epochs", "1",
             "--teacher", str(teacher), "--config", str(config), "-o", "run"]  # fmt: skip
    command = [*rendezvous, *train]
    procs = [_torchrun(*command, nproc=1, cwd=cwd) for cwd in nodes]
    outputs = [_finish(p) for p in procs]
    wrote = [cwd for cwd in nodes if (cwd / "run").exists()]
    assert len(wrote) == 1, outputs  # the node that got rank 0, and only it
    run = wrote[0] / "run"
    assert {"last.pt", "best.pt", "metrics.json", "run.json"} <= {p.name for p in run.iterdir()}
    assert load_checkpoint(run / "last.pt")["world_size"] == 2
    assert sum("binary share of MACs" in out for out in outputs) == 1  # rank 0 reports


@pytest.mark.parametrize(("first", "second"), [(2, 1), (1, 2)])
def test_resume_with_another_number_of_processes(tmp_path, teacher, first, second) -> None:
    def launch(nproc: int, *extra: str) -> str:
        args = [str(WORKER), "finetune", str(tmp_path), "--teacher", str(teacher), *extra]
        return _finish(_torchrun(*args, nproc=nproc)) if nproc > 1 else _single(*args)

    launch(first, "--stop-after", "1")
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and state["world_size"] == first
    out = launch(second)
    assert f"resuming a {first}-process run with {second} process(es)" in out
    final = load_checkpoint(tmp_path / "run" / "last.pt")
    steps = {1: 16, 2: 8}  # 512 samples, 32 per process and step
    assert final["epoch"] == 2 and final["world_size"] == second
    assert final["step"] == 2 * steps[second]  # the counter continues at the new rate
    assert final["history"][0] == state["history"][0]  # epoch 1 kept as it was
    assert final["history"][1]["step"] == final["step"]
    assert all(torch.isfinite(v.float()).all() for v in final["model"].values())


def test_a_failing_rank_stops_the_others_with_a_clear_message(tmp_path, teacher) -> None:
    proc = _torchrun(str(WORKER), "bad-label", str(tmp_path), "--teacher", str(teacher))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    bad = epoch_indices(512, 0, 0, Ranks(1, 2))[0]  # dist_worker's bad item: rank 1's first
    # rank 1 holds the bad item and names it; rank 0 stops instead of waiting for rank 1
    assert f"DataFormatError: train_data item {bad} has label 10" in out
    assert "RankFailedError: rank 1 of 2 failed in training step" in out
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_rank_with_a_non_finite_loss_is_named_by_the_others(tmp_path, teacher) -> None:
    proc = _torchrun(str(WORKER), "nan-image", str(tmp_path), "--teacher", str(teacher))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    # rank 1 loaded the NaN image and reports its own loss; rank 0 names rank 1 and that loss
    # instead of calling its own finite loss non-finite
    assert "NonFiniteLossError: non-finite training loss (nan) at epoch 1, step 1;" in out
    assert (
        "RankFailedError: rank 1 of 2 failed in training step 1 (NonFiniteLossError: "
        "non-finite training loss (nan) at epoch 1, step 1;"
    ) in out
    assert re.search(r"non-finite training loss \([-\d]", out) is None, out[-3000:]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_data_of_another_length_on_one_rank_is_a_clear_error_on_every_rank(
    tmp_path, teacher
) -> None:
    proc = _torchrun(str(WORKER), "uneven", str(tmp_path), "--teacher", str(teacher))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    line = "DistributedSetupError: train_data has a different length on each process (rank 0: "
    assert out.count(line + "512, rank 1: 511 items); every process must pass the same") == 2
    assert "gloo" not in out.lower() or "DistributedSetupError" in out
    assert not (tmp_path / "run" / "last.pt").exists()


def test_sync_bn_on_the_cpu_is_refused_on_every_rank_before_work(tmp_path, teacher) -> None:
    proc = _torchrun(str(WORKER), "sync-bn", str(tmp_path), "--teacher", str(teacher))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    # each rank finds the problem itself, before any work
    assert out.count("'sync_bn': got True, but torch's SyncBatchNorm runs on CUDA") >= 2
    assert not (tmp_path / "run").exists()
