"""``autobin mmdet-train / mmdet-test --launcher pytorch`` under torchrun, on the CPU (gloo).

mmengine's pytorch launcher assumes GPUs; autobin sets up the gloo group and a device-less DDP
wrapper where there is no CUDA. Real processes, loopback only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mmdet_helpers import FAST, SSD_VOC, write_binarized_ssd_config

from autobin.cli import main

# two torchrun launches of up to 900 s each (their own subprocess timeout) fit in the test's limit
pytestmark = [
    pytest.mark.mmdet,
    pytest.mark.slow,
    pytest.mark.xdist_group("torchrun"),
    pytest.mark.timeout(2 * 900 + 300),
]


def _torchrun(*args: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "autobin", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def four_image_set(tmp_path_factory) -> Path:
    from autobin.data.mnist_det import write_mnist_det

    return write_mnist_det(tmp_path_factory.mktemp("data") / "mnist-det", trainval=4, test=2)


def test_two_processes_train_and_test_a_binarized_ssd(tmp_path, four_image_set, capsys) -> None:
    config = write_binarized_ssd_config(tmp_path / "ssd300_bin.py", four_image_set)
    work = tmp_path / "work"
    _torchrun("mmdet-train", str(config), "--launcher", "pytorch", "--work-dir", str(work),
              "--cfg-options", "train_cfg.max_epochs=1", *FAST)  # fmt: skip
    assert (work / "epoch_1.pth").is_file()
    logs = sorted(work.glob("*/vis_data/scalars.json"))
    assert len(logs) == 1  # rank 0 alone writes the logs
    records = [json.loads(line) for line in logs[0].read_text().splitlines() if line]
    # 4 images, batch 1 per process, 2 processes: the data is sharded, two iterations an epoch
    assert [r["iter"] for r in records if "loss" in r] == [1, 2]
    assert any("pascal_voc/mAP" in r for r in records)

    out = _torchrun("mmdet-test", str(config), str(work / "epoch_1.pth"), "--launcher",
                    "pytorch", "--work-dir", str(tmp_path / "test"),
                    "--cfg-options", "test_dataloader.num_workers=0")  # fmt: skip
    metrics = _json_objects(out)
    assert len(metrics) == 2  # each process prints the metrics gathered over both
    assert metrics[0] == metrics[1]
    # the sharded evaluation (one image per process) gathers to exactly the single-process mAP
    assert main(["mmdet-test", str(config), str(work / "epoch_1.pth"), "--work-dir",
                 str(tmp_path / "single"), "--cfg-options",
                 "test_dataloader.num_workers=0"]) == 0  # fmt: skip
    text = capsys.readouterr().out  # mmengine's log, then the metrics as JSON
    single = json.loads(text[text.rindex("\n{\n") + 1 :])
    assert single["pascal_voc/mAP"] == metrics[0]["pascal_voc/mAP"]


def _json_objects(text: str) -> list[dict]:
    """The JSON objects the processes printed (``json.dumps(..., indent=2)``) in their shared
    output: two processes' prints may meet on one line (``}{``), so objects are read where they
    start, not line by line."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := text.find('{\n  "', at)) != -1:
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
    return objects


def test_launcher_pytorch_outside_torchrun_says_how_to_launch(tmp_path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["mmdet-train", SSD_VOC, "--launcher", "pytorch", "--work-dir", str(work)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchrun --nproc_per_node=N -m autobin mmdet-train" in err[0]
    assert not work.exists()
