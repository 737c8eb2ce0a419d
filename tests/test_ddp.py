"""DDP on 2 CPU processes (gloo) against 1 process on the same global batch, with masked losses and
items without a W+ target (what flips and face masks give), so each rank's mask area and number of
latent targets differ: the masked L2 and the latent term must be normalised over the global batch.

The model is ``TinyPSp`` (no BatchNorm): DDP averages gradients, which equals the single-process
gradient of the global batch exactly when every rank has the same batch size and nothing normalizes
with per-rank batch statistics. (The IR-SE backbone's BatchNorm in train mode does; ``--sync_bn``
fixes that on CUDA only, so it is not what this CPU test compares.)
"""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from test_training import TinyPSp, ToyItems, toy_opts

from render2style.training import Trainer
from render2style.training.distributed import cleanup_distributed

GLOBAL_BATCH = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(exp_dir, world: int, out) -> None:
    opts = toy_opts(exp_dir, "--batch_size", str(GLOBAL_BATCH // world), "--max_steps", "3",
                    "--val_interval", "3", "--save_interval", "3", "--flip_p", "0", "--mask_losses")
    trainer = Trainer(opts, net=TinyPSp(), datasets=(ToyItems(20, varied=True), ToyItems(5, 1)))
    history = trainer.train()
    val = trainer.validate()
    torch.save({"state": trainer.net.state_dict(), "val": val, "losses": [h["loss"] for h in history],
                "writes_logs": trainer.writer is not None, "world": trainer.env.world_size}, out)
    trainer.close()


def _worker(rank: int, world: int, port: int, exp_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        _run(exp_dir, world, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    _run(tmp / "single", 1, tmp / "single.pt")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp / "ddp"), str(tmp)), nprocs=2, join=True)
    load = lambda name: torch.load(tmp / name, weights_only=True)  # noqa: E731
    return tmp, load("single.pt"), load("rank0.pt"), load("rank1.pt")


def test_two_ranks_give_the_parameters_of_one_process_on_the_global_batch(runs):
    _, single, r0, r1 = runs
    assert r0["world"] == r1["world"] == 2 and single["world"] == 1
    for k, v in single["state"].items():
        assert torch.equal(r0["state"][k], r1["state"][k]), f"ranks disagree on {k}"
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)
    # the global-batch loss is the mean of the two ranks' losses
    for a, b, s in zip(r0["losses"], r1["losses"], single["losses"]):
        assert (a + b) / 2 == pytest.approx(s, rel=1e-5)


def test_validation_is_gathered_over_ranks_without_duplicates(runs):
    _, single, r0, r1 = runs
    assert r0["val"] == r1["val"]  # every rank gets the same (all-reduced) numbers
    for k, v in single["val"].items():  # 5 test items: shards of 3 + 2, no padding
        assert r0["val"][k] == pytest.approx(v, rel=1e-5)


def test_only_rank_0_writes_logs_and_checkpoints(runs):
    tmp, _, r0, r1 = runs
    assert r0["writes_logs"] and not r1["writes_logs"]
    ckpt = torch.load(tmp / "ddp" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["resume"]["world_size"] == 2 and ckpt["resume"]["step"] == 3
    for k, v in r0["state"].items():
        assert torch.equal(ckpt["state_dict"][k], v)
