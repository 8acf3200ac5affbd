"""`train --resume` with a changed config: refused naming every key that differs, config.yaml untouched;
the number of epochs (and how the run executes) may change, and config.yaml then records what ran."""

from __future__ import annotations

import pytest
import yaml

from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.errors import ConfigError
from mpliver.training.checkpoint import load_checkpoint
from mpliver.training.config import Config, config_differences, load_config
from mpliver.training.trainer import fit, seed_everything

BASE = ["optim.lr=0.05", "optim.step_epochs=1", "data.batch_size=3", "data.num_workers=0",
        "train.progress=false", "train.seed=3", "train.device=cpu", "train.tensorboard=false"]


def _config(*extra: str) -> Config:
    return load_config("paper", [*BASE, *extra])


def _fit(config: Config, out, resume: bool = False):
    seed_everything(3)
    return fit(config, ToyNet(), toy_data(), out, loss_fn=ce_loss, resume=resume)


def test_resume_with_changed_settings_is_refused_naming_each_key(tmp_path):
    run = tmp_path / "run"
    _fit(_config("optim.epochs=1"), run)
    saved_yaml = (run / "config.yaml").read_text()
    before = load_checkpoint(run / "checkpoints" / "last.pt")
    changed = _config("optim.epochs=2", "optim.lr=0.01", "data.input_size=96")
    with pytest.raises(ConfigError) as info:
        _fit(changed, run, resume=True)
    message = str(info.value)
    assert "data.input_size=512, not 96" in message and "optim.lr=0.05, not 0.01" in message
    assert "optim.epochs" not in message.split("(", 1)[1].split(")")[0]  # epochs may change: not a difference
    assert "\n" not in message
    # nothing was touched: config.yaml still says what the checkpoint was trained with
    assert (run / "config.yaml").read_text() == saved_yaml
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert after["epoch"] == before["epoch"] == 1


def test_more_epochs_resume_and_config_yaml_records_what_ran(tmp_path):
    run = tmp_path / "run"
    _fit(_config("optim.epochs=1"), run)
    _fit(_config("optim.epochs=2", "data.num_workers=0", "train.progress=true"), run, resume=True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["epochs"] == 2 and saved["optim"]["lr"] == 0.05
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    # the checkpoint's config and config.yaml agree on everything that computes the weights
    assert config_differences(load_checkpoint(run / "checkpoints" / "last.pt")["config"], saved) == []


def test_config_differences_lists_all_keys_and_fills_defaults_of_older_runs():
    new = _config("optim.epochs=3").to_dict()
    old = _config("optim.epochs=3", "optim.lr=0.1", "data.batch_size=4").to_dict()
    del old["data"]["mask_jitter"]  # a key added to mpliver later: the old run used its default
    assert config_differences(old, new) == [("optim.lr", 0.1, 0.05), ("data.batch_size", 4, 3)]
    assert config_differences(new, _config("optim.epochs=3", "train.device=auto").to_dict()) == []


def test_crossval_run_folder_check_names_every_differing_key(tmp_path):
    from mpliver.experiments.crossval import check_run_config

    _config("optim.epochs=3").save(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"optim.epochs=3, not 4; optim.lr=0.05, not 0.2"):
        check_run_config(tmp_path, _config("optim.epochs=4", "optim.lr=0.2", "train.device=auto"))


def test_resume_compares_the_network_the_checkpoint_trained():
    """A run written before a registry default changed (here liver_resunet's width, 0.5 then) is judged by
    the `model_config` its checkpoint stored: resuming with that width spelled out passes, and resuming
    with today's default is refused naming the run's own value."""
    from mpliver.models.registry import resolve_config
    from mpliver.training.trainer import _check_resumable

    today = resolve_config("liver_resunet")
    assert today.width != 0.5
    old_run = load_config("paper", ["model.name=liver_resunet", "train.task=liver"])
    state = {"config": old_run.to_dict(),
             "model_config": resolve_config("liver_resunet", width=0.5).to_dict()}
    spelled = old_run.override(["model.width=0.5"])
    _check_resumable(state, spelled, "last.pt", resolve_config("liver_resunet", width=0.5).to_dict())
    with pytest.raises(ConfigError, match=rf"model\.width=0\.5, not {today.width}"):
        _check_resumable(state, old_run, "last.pt", today.to_dict())
    # a checkpoint without model_config (older still) is judged by its config sections, as before
    with pytest.raises(ConfigError, match=rf"model\.width={today.width}, not 0\.5"):
        _check_resumable({"config": old_run.to_dict()}, spelled, "last.pt",
                         resolve_config("liver_resunet", width=0.5).to_dict())
