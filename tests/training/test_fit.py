"""The epoch loop: exact resume, NaN handling, the CSV log, best/last checkpoints and the run folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.errors import MpliverError
from mpliver.training.checkpoint import load_checkpoint
from mpliver.training.config import load_config
from mpliver.training.loop import NonFiniteLossError
from mpliver.training.trainer import fit, seed_everything


def _config(epochs: int, **extra: str):
    overrides = [
        f"optim.epochs={epochs}",
        "optim.lr=0.05",
        "optim.step_epochs=1",
        "optim.gamma=0.5",
        "data.batch_size=3",
        "data.num_workers=0",
        "train.progress=false",
        "train.seed=3",
        "train.device=cpu",
        "train.tensorboard=false",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config("paper", overrides)


def _model(**kw) -> ToyNet:
    seed_everything(3)
    return ToyNet(**kw)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path):
    # augmentation draws from the global RNG: epoch 2's RNG must depend on (seed, epoch) only
    straight = _model()
    fit(_config(2), straight, toy_data(augment=True), tmp_path / "straight", loss_fn=ce_loss)

    first = _model()
    fit(_config(1), first, toy_data(augment=True), tmp_path / "split", loss_fn=ce_loss)
    torch.manual_seed(12345)  # disturb every global RNG between the two halves, as a new process would
    resumed = _model()
    fit(_config(2), resumed, toy_data(augment=True), tmp_path / "split", loss_fn=ce_loss, resume=True)

    a, b, one = _params(straight), _params(resumed), _params(first)
    assert any(
        not torch.allclose(a[k], one[k]) for k in a if a[k].is_floating_point()
    )  # epoch 2 did change them
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-7)
    # the resumed run's optimizer state matches too (momentum buffers and the stepped learning rate)
    sa = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    sb = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert sa["epoch"] == sb["epoch"] == 2
    assert sa["scheduler"]["last_epoch"] == sb["scheduler"]["last_epoch"] == 2
    for ka, kb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(kb["momentum_buffer"], ka["momentum_buffer"], rtol=1e-6, atol=1e-7)
    # the log of the split run has one row per epoch, like the straight one
    rows_a = list(csv.DictReader((tmp_path / "straight" / "log.csv").open()))
    rows_b = list(csv.DictReader((tmp_path / "split" / "log.csv").open()))
    assert [r["epoch"] for r in rows_b] == ["1", "2"]
    assert [float(r["train_loss"]) for r in rows_b] == pytest.approx([float(r["train_loss"]) for r in rows_a])
    assert [float(r["lr"]) for r in rows_b] == pytest.approx([0.05, 0.025])  # StepLR(step 1, gamma 0.5)
    assert (tmp_path / "split" / "run_info.resume1.json").exists()


def test_run_folder_contents(tmp_path):
    model = _model()
    out = fit(_config(2), model, toy_data(), tmp_path / "run", loss_fn=ce_loss, run_extra={"fold": 1})
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "slices_per_s"]
    assert len(rows) == 2 and all(0.0 <= float(r["val_dice"]) <= 1.0 for r in rows)
    assert float(rows[0]["slices_per_s"]) > 0
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 3 and info["fold_info"] == {"fold": 1}
    assert info["environment"]["torch"] == torch.__version__ and info["git"]["commit"]
    assert (out / "config.yaml").read_text().startswith("model:")
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    dices = [float(r["val_dice"]) for r in rows]
    assert best["epoch"] == 1 + dices.index(max(dices)) and best["best_metric"] == pytest.approx(max(dices))
    # the final weights are those of the model object
    for key, value in model.state_dict().items():
        torch.testing.assert_close(last["model"][key], value)


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss)
    with pytest.raises(MpliverError, match="--resume"):
        fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss)
    # a finished run resumed is a no-op that keeps the checkpoint
    before = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss, resume=True)
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert after["epoch"] == 1
    for key in before["model"]:
        assert torch.equal(before["model"][key], after["model"][key])


def test_resume_with_a_different_model_is_refused(tmp_path):
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss)
    with pytest.raises(MpliverError, match=r"model.width=.*, not 0.5"):
        fit(
            _config(2, **{"model.width": 0.5}),
            _model(),
            toy_data(),
            tmp_path / "run",
            loss_fn=ce_loss,
            resume=True,
        )


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    # 8 slices per epoch at batch 3 = 3 steps; NaN from the 5th training forward (epoch 2, step 2)
    model = _model(nan_after=4)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* epoch 2, step 2") as info:
        fit(_config(3), model, toy_data(), tmp_path / "run", loss_fn=ce_loss)
    assert "last.pt" in str(info.value)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the checkpoint resumes: the same weights as an uninterrupted first epoch
    reference = _model()
    fit(_config(1), reference, toy_data(), tmp_path / "ref", loss_fn=ce_loss)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(state["model"][key], value)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]


def test_nan_in_first_epoch_keeps_initial_weights(tmp_path):
    model = _model()
    initial = _params(model)
    with pytest.raises(NonFiniteLossError):
        fit(_config(2, **{"optim.lr": 1e30}), model, toy_data(), tmp_path / "run", loss_fn=ce_loss)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 0
    for key, value in initial.items():
        torch.testing.assert_close(state["model"][key], value)
