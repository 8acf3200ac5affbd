"""`train.ema`: a moving average of the weights, checked against a float64 average of the weights seen after
every step; the checkpoint's `model` is the average, resume continues it bit for bit, and bad values are
refused."""

from __future__ import annotations

import pytest
import torch

from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.errors import ConfigError
from mpliver.training.callbacks import Callback
from mpliver.training.checkpoint import load_checkpoint
from mpliver.training.config import load_config
from mpliver.training.trainer import fit, seed_everything, unwrap

BASE = ["optim.lr=0.05", "optim.step_epochs=1", "data.batch_size=3", "data.num_workers=0",
        "train.seed=3", "train.device=cpu", "train.tensorboard=false"]


class Recorder(Callback):
    """Keeps a float64 moving average of every float weight and buffer, from the trained weights after each
    optimiser step (the first step's weights start it)."""

    def __init__(self, decay: float):
        self.decay, self.average, self.steps = decay, None, 0

    def on_train_step(self, trainer, report) -> None:
        if report.done == 0:  # the report before the first step of an epoch
            return
        state = {k: v.detach().double().clone() for k, v in unwrap(trainer.ddp_model).state_dict().items()
                 if v.is_floating_point()}
        self.steps += 1
        if self.average is None:
            self.average = state
        else:
            self.average = {k: self.decay * self.average[k] + (1 - self.decay) * state[k] for k in state}


def _fit(out, *extra: str, resume: bool = False, callbacks=()):
    config = load_config("paper", [*BASE, *extra])
    seed_everything(3)
    return fit(config, ToyNet(), toy_data(), out, loss_fn=ce_loss, resume=resume, callbacks=callbacks)


def test_checkpoint_holds_the_moving_average_of_the_weights(tmp_path):
    recorder = Recorder(0.8)
    _fit(tmp_path / "run", "optim.epochs=2", "train.ema=0.8", "train.progress=true", callbacks=[recorder])
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["ema_steps"] == recorder.steps > 2
    for key, expected in recorder.average.items():
        torch.testing.assert_close(state["model"][key].double(), expected, rtol=1e-5, atol=1e-6)
    # the trained weights are kept apart for resuming, and they differ from the average
    assert any(not torch.equal(state["model"][k], state["model_raw"][k]) for k in recorder.average)


def test_without_ema_the_checkpoint_is_as_before(tmp_path):
    _fit(tmp_path / "run", "optim.epochs=1", "train.progress=false")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert "model_raw" not in state and "ema_steps" not in state


def test_resume_continues_the_average_bit_for_bit(tmp_path):
    _fit(tmp_path / "whole", "optim.epochs=2", "train.ema=0.9", "train.progress=false")
    _fit(tmp_path / "split", "optim.epochs=1", "train.ema=0.9", "train.progress=false")
    _fit(tmp_path / "split", "optim.epochs=2", "train.ema=0.9", "train.progress=false", resume=True)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert whole["ema_steps"] == split["ema_steps"]
    for part in ("model", "model_raw"):
        for key in whole[part]:
            assert torch.equal(whole[part][key], split[part][key]), (part, key)


def test_changing_ema_on_resume_is_refused(tmp_path):
    _fit(tmp_path / "run", "optim.epochs=1", "train.progress=false")
    with pytest.raises(ConfigError, match="train.ema"):
        _fit(tmp_path / "run", "optim.epochs=2", "train.ema=0.9", "train.progress=false", resume=True)


@pytest.mark.parametrize("bad", ["1.0", "-0.1"])
def test_bad_ema_is_refused(bad):
    with pytest.raises(ConfigError, match="ema"):
        load_config("paper", [f"train.ema={bad}"])
