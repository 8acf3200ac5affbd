# ruff: noqa: NPY002  (the legacy global numpy generator is what these RNG-state tests are about)
"""Atomic checkpoints: round trip, RNG states, clear errors on damaged files, and survival of a kill -9."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mpliver.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    state_is_finite,
)

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_and_weights_only(tmp_path):
    state = {
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "epoch": 4,
        "best_metric": 0.5,
        "config": {"optim": {"lr": 0.1}},
        "rng": capture_rng_state({"seed": 1, "next_epoch": 4}),
    }
    path = save_checkpoint(tmp_path / "ck" / "last.pt", state)
    # an independent reader: plain torch.load with weights_only=True (no pickled code needed)
    raw = torch.load(path, weights_only=True)
    assert torch.equal(raw["model"]["w"], state["model"]["w"]) and raw["epoch"] == 4
    loaded = load_checkpoint(path)
    assert loaded["config"] == {"optim": {"lr": 0.1}} and loaded["rng"]["sampler"] == {
        "seed": 1,
        "next_epoch": 4,
    }
    assert not list(path.parent.glob(".*"))


def test_rng_states_restore_every_generator():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.rand(3), np.random.rand(3), random.random()  # advance them somewhere
    state = capture_rng_state()
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.randn(3))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(state)
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.randn(3))
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    np.testing.assert_array_equal(got[3], expected[3])


def test_damaged_files_give_one_line_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(1000)}, "epoch": 1})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match="corrupt or unreadable checkpoint") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not an mpliver checkpoint"):
        load_checkpoint(foreign)


def test_state_is_finite():
    assert state_is_finite({"w": torch.ones(3), "n": torch.tensor(3)})
    assert not state_is_finite({"w": torch.tensor([1.0, float("nan")])})
    assert not state_is_finite({"w": torch.tensor([float("inf")])})


_WRITER = """
import sys, torch
from mpliver.training.checkpoint import save_checkpoint
path = sys.argv[1]
big = torch.empty(12_000_000)
i = 0
while True:
    big.fill_(float(i))
    save_checkpoint(path, {"model": {"w": big}, "epoch": i})
    print(i, flush=True)
    i += 1
"""


@pytest.mark.slow
def test_kill_minus_9_during_a_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "0"  # one complete checkpoint exists
        deadline = time.monotonic() + 60
        mid_write = False
        while time.monotonic() < deadline:
            if list(tmp_path.glob(".last.pt.tmp-*")):  # a newer checkpoint is being written right now
                mid_write = True
                break
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert mid_write and proc.returncode == -signal.SIGKILL
    state = load_checkpoint(path)
    epoch = state["epoch"]
    w = state["model"]["w"]
    assert w.numel() == 12_000_000 and bool((w == float(epoch)).all())
    # the killed writer's temporary file is cleaned up by the next save
    save_checkpoint(path, {"model": {"w": torch.zeros(1)}, "epoch": epoch + 1})
    assert not list(tmp_path.glob(".last.pt.tmp-*"))
    assert load_checkpoint(path)["epoch"] == epoch + 1
