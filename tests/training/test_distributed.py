"""DDP on the CPU: two `gloo` processes, launched as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.errors import MpliverError
from mpliver.runtime import DistInfo, env_dist_info, shard
from mpliver.training.config import load_config
from mpliver.training.trainer import fit, seed_everything

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OVERRIDES = [
    "optim.epochs=2",
    "optim.lr=0.05",
    "optim.step_epochs=1",
    "optim.gamma=0.5",
    "data.num_workers=0",
    "train.progress=false",
    "train.seed=3",
    "train.device=cpu",
    "train.tensorboard=false",
]

_RANK_SCRIPT = """
import sys, torch
from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.training.config import load_config
from mpliver.runtime import cleanup, init_distributed
from mpliver.training.trainer import fit, seed_everything
out, overrides = sys.argv[1], sys.argv[2:]
info = init_distributed("cpu")
for freeze in (True, False):
    cfg = load_config("paper", overrides + ["data.batch_size=2"])
    seed_everything(3)
    model = ToyNet(freeze_bn=freeze)
    run = f"{out}/run_freeze{int(freeze)}"
    fit(cfg, model, toy_data(n=12, per_epoch=12), run, loss_fn=ce_loss, dist_info=info,
        device=torch.device("cpu"))
    torch.save(model.state_dict(), f"{run}/rank{info.rank}.pt")
cleanup()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_deals_out_global_batches():
    items = list(range(10))
    shards = [shard(items, DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    # batch i of size b on each rank together = single-process batch i of size 2b
    b = 2
    for i in range(2):
        together = sorted(shards[0][i * b : (i + 1) * b] + shards[1][i * b : (i + 1) * b])
        assert together == items[i * 2 * b : (i + 1) * 2 * b]
    padded = [shard(list(range(7)), DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in padded] == [3, 3, 3] and sorted(sum(padded, [])) == [0, 0, 1, 1, 2, 3, 4, 5, 6]
    assert sorted(sum([shard(range(7), DistInfo(r, 3), pad=False) for r in range(3)], [])) == list(range(7))
    assert shard(items, DistInfo()) == items


def test_env_dist_info(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert env_dist_info() == DistInfo(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(MpliverError, match="RANK=5"):
        env_dist_info()


@pytest.mark.slow
def test_two_gloo_ranks_agree_and_equal_single_process_with_frozen_bn(tmp_path):
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _RANK_SCRIPT, str(tmp_path), *OVERRIDES],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)

    # the reference: one process, the same global batch (2 per rank x 2 ranks = 4), BatchNorm frozen
    cfg = load_config("paper", [*OVERRIDES, "data.batch_size=4"])
    seed_everything(3)
    single = ToyNet(freeze_bn=True)
    initial = {k: v.clone() for k, v in single.state_dict().items()}
    fit(cfg, single, toy_data(n=12, per_epoch=12), tmp_path / "single", loss_fn=ce_loss)

    for freeze in (1, 0):
        run = tmp_path / f"run_freeze{freeze}"
        r0 = torch.load(run / "rank0.pt", weights_only=True)
        r1 = torch.load(run / "rank1.pt", weights_only=True)
        # the ranks hold identical parameters; BN running statistics are per rank unless BN is frozen
        keys = list(r0) if freeze else [name for name, _ in ToyNet().named_parameters()]
        for key in keys:
            assert torch.equal(r0[key], r1[key]), key
        assert any(not torch.equal(r0[k], initial[k]) for k in r0 if r0[k].is_floating_point())  # it trained
        assert not (run / "rank1").exists() and (run / "checkpoints" / "last.pt").exists()
    ddp = torch.load(tmp_path / "run_freeze1" / "rank0.pt", weights_only=True)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
    # validation is sharded over the ranks and summed: the same Dice and loss as one process
    rows_ddp = list(csv.DictReader((tmp_path / "run_freeze1" / "log.csv").open()))
    rows_one = list(csv.DictReader((tmp_path / "single" / "log.csv").open()))
    for a, b in zip(rows_ddp, rows_one, strict=True):
        for key in ("train_loss", "val_loss", "val_dice"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-6), key


def test_resolve_device_names_the_option_in_its_errors():
    from mpliver.errors import ConfigError
    from mpliver.runtime import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="train.device must be auto, cpu, cuda or gpu, got 'tpu'"):
        resolve_device("tpu", what="train.device")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        assert resolve_device("gpu", local_rank=0) == torch.device("cuda", 0)  # gpu: a synonym (issue 12)
        assert resolve_device("gpu:0") == torch.device("cuda", 0)
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="--device cuda asked for, but torch sees no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="--device cuda asked for"):  # gpu: a synonym (issue 12)
            resolve_device("gpu")
