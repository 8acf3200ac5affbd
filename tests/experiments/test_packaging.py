"""Packaging training runs into a bundle: the architecture as trained, and the run's own pre-processing."""

from __future__ import annotations

import pytest
import yaml

from mpliver.experiments.packaging import _run_model, bundle_from_runs
from mpliver.inference.bundle import BundleError, load_bundle
from mpliver.models import create_model
from mpliver.training.checkpoint import save_checkpoint
from mpliver.training.config import load_config, load_task_config


def test_a_run_is_rebuilt_from_its_checkpoints_architecture_not_todays_defaults(tmp_path):
    """A liver run whose config.yaml names no width, trained when liver_resunet defaulted to width 0.5:
    with `model_config` in the checkpoint it rebuilds; without, the error says what to add."""
    config = load_task_config("paper", "liver")
    assert config.model.overrides == {}  # the saved config.yaml will carry no width
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    old = create_model("liver_resunet", width=0.5)
    ckpt = tmp_path / config.train.checkpoint_dir / "last.pt"
    save_checkpoint(ckpt, {"model": old.state_dict(), "model_config": old.config.to_dict(), "epoch": 3})
    model, _, _ = _run_model(tmp_path, "last", "liver")
    assert model.config.width == 0.5
    save_checkpoint(ckpt, {"model": old.state_dict(), "epoch": 3})  # an older checkpoint
    with pytest.raises(BundleError, match="width: 0.5"):
        _run_model(tmp_path, "last", "liver")


def test_a_bundle_keeps_the_runs_own_preprocessing(tmp_path):
    """Window, margin and context of the run reach the bundle; registration and liver-mask source are the
    inference ones (label-free registration, mask from a file when no liver run is given)."""
    config = load_config("cpu-small", ["model.width=0.125", "data.preprocess.margin_mm=5",
                                       "data.preprocess.window=[-100,200]",
                                       "data.preprocess.context_slices=5"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    model = create_model(config.model.name, **config.model.overrides)
    save_checkpoint(tmp_path / config.train.checkpoint_dir / "best.pt",
                    {"model": model.state_dict(), "model_config": model.config.to_dict(), "epoch": 1})
    bundle = load_bundle(bundle_from_runs(tmp_path, tmp_path / "m.mpliver"))
    pp = bundle.preprocess
    assert (pp.margin_mm, pp.window, pp.context_slices) == (5.0, (-100.0, 200.0), 5)
    assert (pp.input_size, pp.crop) == (config.data.preprocess.input_size, config.data.preprocess.crop)
    assert (pp.registration, pp.liver_mask_source, pp.keep_slices) == ("liver", "file", "liver")
