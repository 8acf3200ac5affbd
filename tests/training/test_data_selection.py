"""Which cases a fold trains and validates on, and which caches a run accepts."""

from __future__ import annotations

import pytest

from mpliver.errors import ConfigError
from mpliver.training.config import load_config
from mpliver.training.data import (
    check_cache_matches,
    default_cache_dir,
    preprocess_config_for,
    split_train_val,
)


def test_split_train_val_sizes_and_determinism():
    cases = [f"C{i:02d}" for i in range(20)]
    train, val = split_train_val(cases, 0.15, seed=0)
    assert len(val) == 3 and len(train) == 17  # round(0.15 x 20) = 3
    assert sorted(train + val) == cases and not set(train) & set(val)
    assert split_train_val(list(reversed(cases)), 0.15, seed=0) == (train, val)  # order-independent
    assert split_train_val(cases, 0.15, seed=1)[1] != val  # the seed picks them
    assert len(split_train_val(cases[:3], 0.1, seed=0)[1]) == 1  # at least one validation case
    assert split_train_val(cases[:1], 0.5, seed=0) == (cases[:1], [])  # never all of them
    assert split_train_val(cases, 0.0, seed=0) == (cases, [])


def test_cache_must_match_the_run():
    cfg = load_config("cpu-small")
    check_cache_matches({"input_size": 96, "crop": True, "keep_slices": "liver"}, cfg, "c")
    with pytest.raises(ConfigError, match="data.input_size=128"):
        check_cache_matches({"input_size": 128, "crop": True}, cfg, "c")
    liver = load_config("cpu-small", ["train.task=liver", "model.name=liver_resunet"])
    with pytest.raises(ConfigError, match="whole slices"):
        check_cache_matches({"input_size": 96, "crop": True, "keep_slices": "liver"}, liver, "c")
    check_cache_matches({"input_size": 96, "crop": False, "keep_slices": "all"}, liver, "c")


def test_default_cache_dir_separates_input_kinds(tmp_path):
    tumor = default_cache_dir(tmp_path / "ds", load_config("cpu-small"))
    liver = default_cache_dir(tmp_path / "ds", load_config("cpu-small", ["train.task=liver"]))
    assert tumor == tmp_path / "ds.cache" / "crop96-tumor-center"
    assert liver == tmp_path / "ds.cache" / "full96-all-tumor-center"


def test_the_run_preprocesses_with_data_preprocess_and_whole_slices_for_the_liver():
    tumor = load_config("cpu-small", ["data.preprocess.margin_mm=6", "data.preprocess.context_slices=5"])
    assert preprocess_config_for(tumor) is tumor.data.preprocess  # the config's own, not a copy
    liver = load_config("cpu-small", ["train.task=liver", "data.preprocess.margin_mm=6"])
    pre = preprocess_config_for(liver)
    assert (pre.crop, pre.keep_slices) == (False, "all") and liver.data.preprocess.crop is True
    assert (pre.input_size, pre.margin_mm, pre.registration) == (96, 6.0, "tumor-center")
