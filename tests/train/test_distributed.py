"""finetune under torch.distributed: two gloo processes on the CPU, one DDP-wrapped student."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from autobin.train import load_checkpoint

SCRIPT = textwrap.dedent(
    """
    import sys
    import timm, torch, torch.distributed as dist, torch.multiprocessing as mp
    import autobin
    from autobin.train import finetune

    def worker(rank, out):
        dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank,
                                world_size=2)
        torch.set_num_threads(1)
        torch.manual_seed(0)  # same teacher and student on both ranks
        teacher = timm.create_model("resnet10t", num_classes=10, in_chans=1)
        student = autobin.binarize(teacher, example_inputs=(torch.zeros(2, 1, 8, 8),))
        ddp = torch.nn.parallel.DistributedDataParallel(student)
        finetune(ddp, teacher, "digits", epochs=1, out_dir=f"{out}/run",
                 config={"batch_size": 32, "progress": False, "plots": False})
        params = {k: v.detach() for k, v in student.named_parameters()}
        torch.save(params, f"{out}/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(worker, args=(sys.argv[1],), nprocs=2)
    """
)


@pytest.mark.slow
def test_two_process_finetune_keeps_ranks_in_sync_and_shards_the_data(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key, value in a.items():
        # parameters stay identical: gradients are averaged across the ranks (BN running
        # statistics are per rank between DDP's broadcasts, so they are not compared)
        assert torch.equal(value, b[key]), key
    ckpt = load_checkpoint(tmp_path / "run/last.pt")
    # 1,437 training digits split over 2 ranks: 719 each, 22 full batches of 32 per rank
    assert ckpt["step"] == 22
    assert (tmp_path / "run/metrics.json").is_file()
