"""`mpliver train` end to end on a tiny synthetic cohort: the real models, pre-processing and sampler."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from mpliver.cli import main
from mpliver.training.checkpoint import load_checkpoint

TINY = [
    "data.input_size=64",
    "data.slices_per_epoch=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_max_slices=8",
    "train.threads=1",
    "train.progress=false",
    "train.tensorboard=false",
    "optim.step_epochs=1",
]


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from mpliver.data.phantom import write_cohort
    from mpliver.data.phantom.config import PhantomConfig

    root = tmp_path_factory.mktemp("cohort") / "ds"
    write_cohort(
        root,
        5,
        seed=1,
        config=PhantomConfig(shape=(64, 64, 16), spacing=(5.0, 5.0, 10.0)),
        previews=False,
    )
    return root


def _train(data, out, *extra, resume=False, preset="cpu-small"):
    args = ["train", str(data), "--preset", preset, "--fold", "0", "--out", str(out), *TINY, *extra]
    return main(args + (["--resume"] if resume else []))


@pytest.mark.slow
def test_cli_resume_equals_uninterrupted_with_real_model_and_data(tiny_cohort, tmp_path, capsys):
    assert _train(tiny_cohort, tmp_path / "straight", "optim.epochs=2") == 0
    assert _train(tiny_cohort, tmp_path / "split", "optim.epochs=1") == 0
    assert _train(tiny_cohort, tmp_path / "split", "optim.epochs=2", resume=True) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    run = tmp_path / "straight"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == {"name": "paper", "width": 0.25, "blocks": [1, 1, 2, 1]}
    assert config["data"]["preprocess"]["input_size"] == 64
    info = json.loads((run / "run_info.json").read_text())
    fold = info["fold_info"]
    assert fold["fold"] == 0 and fold["test_cases"] == ["PHANTOM_0002"]  # fold 0 of the cohort's dataset.json
    assert not set(fold["test_cases"]) & set(fold["train_cases"] + fold["val_cases"])
    assert len(fold["val_cases"]) == 1 and len(fold["train_cases"]) == 3
    assert info["seed"] == 0 and "commit" in info["git"] and info["environment"]["device"] == "cpu"
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # the cpu-small learning rate, divided by 10 after step_epochs=1
    assert [float(r["lr"]) for r in rows] == pytest.approx([3e-3, 3e-4])
    assert (tiny_cohort.parent / "ds.cache" / "crop64-tumor-center" / "manifest.json").exists()
    assert "run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_task_liver_trains_liver_resunet_on_whole_slices(tiny_cohort, tmp_path):
    assert _train(tiny_cohort, tmp_path / "liver", "optim.epochs=1", "--task", "liver") == 0
    config = yaml.safe_load((tmp_path / "liver" / "config.yaml").read_text())
    assert config["model"]["name"] == "liver_resunet" and config["train"]["task"] == "liver"
    state = load_checkpoint(tmp_path / "liver" / "checkpoints" / "best.pt")
    assert state["config"]["model"]["name"] == "liver_resunet"
    manifest = json.loads(
        (tiny_cohort.parent / "ds.cache" / "full64-all-tumor-center" / "manifest.json").read_text()
    )
    assert manifest["config"]["crop"] is False and manifest["config"]["keep_slices"] == "all"
    # the liver model refuses a cropped cache: it must see whole slices
    cropped = tiny_cohort.parent / "ds.cache" / "crop64-tumor-center"
    if cropped.exists():
        code = _train(cropped, tmp_path / "liver2", "optim.epochs=1", "--task", "liver")
        assert code == 2


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert _train(tmp_path / "nowhere", tmp_path / "run", "optim.epochs=1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "neither a dataset" in err and str(tmp_path / "nowhere") in err
    assert _train(tmp_path, tmp_path / "run", "optim.learning_rate=1") == 2
    assert "optim.learning_rate" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--fold", "x"]) == 2
    assert "--fold" in capsys.readouterr().err


def test_cli_unknown_model_option_names_it(tiny_cohort, tmp_path, capsys):
    assert _train(tiny_cohort, tmp_path / "run", "optim.epochs=1", "model.widht=0.5") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "widht" in err and err.startswith("error:")


@pytest.mark.slow
def test_cli_nan_loss_is_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_cohort, tmp_path, capsys):
    assert _train(tiny_cohort, tmp_path / "nan", "optim.epochs=2", "optim.lr=1e30") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "non-finite" in err and "last.pt" in err
    state = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_torchrun_two_gloo_processes_same_command(tiny_cohort, tmp_path):
    """`torchrun --nproc_per_node 2 -m mpliver.cli train ...` (CPU, gloo): one run folder, by rank 0."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "mpliver.cli", "train", str(tiny_cohort), "--preset", "cpu-small",
           "--fold", "1", "--out", str(tmp_path / "ddp"), *TINY, "optim.epochs=1", "data.batch_size=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("run folder:") == 1  # rank 0 alone reports
    rows = list(csv.DictReader((tmp_path / "ddp" / "log.csv").open()))
    assert len(rows) == 1 and float(rows[0]["slices_per_s"]) > 0
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["epoch"] == 1
