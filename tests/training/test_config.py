"""Config presets, dotted overrides, validation and YAML round trip."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest
import torch
import yaml

from mpliver.data.config import PreprocessConfig
from mpliver.errors import ConfigError
from mpliver.experiments.crossval import check_run_config
from mpliver.models import ModelConfig
from mpliver.training.config import (
    RESUME_SAFE_KEYS,
    Config,
    DataConfig,
    ModelChoice,
    OptimConfig,
    TrainConfig,
    config_differences,
    config_from_dict,
    list_presets,
    load_config,
    load_task_config,
)
from mpliver.training.overrides import parse_value
from mpliver.training.trainer import make_optimizer


def test_paper_preset_has_the_papers_settings():
    cfg = load_config("paper")
    assert cfg.model.name == "paper" and cfg.model.overrides == {}
    assert cfg.optim.lr == pytest.approx(5e-4)
    assert cfg.optim.momentum == pytest.approx(0.9)
    assert cfg.optim.weight_decay == pytest.approx(1e-4)
    assert (cfg.optim.step_epochs, cfg.optim.gamma, cfg.optim.epochs) == (50, pytest.approx(0.1), 150)
    assert cfg.data.preprocess.input_size == 512 and cfg.data.preprocess.crop is False
    assert cfg.train.task == "tumor"


def test_default_preset_is_the_paper_on_256_px_liver_crops():
    """docs/method.md §3: the default preset uses 256x256 liver-box crops; all else is the paper's."""
    default, paper = load_config("default").to_dict(), load_config("paper").to_dict()
    pre, paper_pre = default["data"]["preprocess"], paper["data"]["preprocess"]
    assert pre["input_size"] == 256 and pre["crop"] is True
    own_pre = ("input_size", "crop")
    assert {k: v for k, v in pre.items() if k not in own_pre} == \
        {k: v for k, v in paper_pre.items() if k not in own_pre}
    for section in ("model", "optim", "train"):
        assert default[section] == paper[section], section
    # issue 13: the default preset (meant for real CT) adds intensity augmentation and leaves lesions its
    # input does not show out of the loss; `paper` keeps the paper's
    own = ("preprocess", "liver_input_size", "intensity_aug", "faint_lesion_cnr")
    assert default["data"]["intensity_aug"] is True and paper["data"]["intensity_aug"] is False
    assert default["data"]["faint_lesion_cnr"] == 0.5 and paper["data"]["faint_lesion_cnr"] == 0.0
    assert {k: v for k, v in default["data"].items() if k not in own} == \
        {k: v for k, v in paper["data"].items() if k not in own}
    # the liver stage: whole slices at data.liver_input_size, unless the command line sets data.input_size
    liver = load_task_config("default", "liver")
    assert liver.model.name == "liver_resunet" and liver.data.preprocess.input_size == 128
    explicit = load_task_config("default", "liver", ["data.input_size =192"])
    assert explicit.data.preprocess.input_size == 192
    nested = load_task_config("default", "liver", ["data.preprocess.input_size=160"])
    assert nested.data.preprocess.input_size == 160
    # cleared once applied: the liver run's saved config, reused as a preset, keeps the size it ran at
    assert liver.data.liver_input_size is None and explicit.data.liver_input_size is None
    assert load_task_config("default", "tumor").data.preprocess.input_size == 256
    # paper: liver_input_size is null
    assert load_task_config("paper", "liver").data.preprocess.input_size == 512


def test_presets_listed_and_cpu_small_is_small():
    assert {"paper", "cpu-small", "default"} <= set(list_presets())
    small = load_config("cpu-small")
    assert small.model.overrides["width"] < 1
    assert small.data.preprocess.input_size <= 128
    assert small.optim.epochs < 150


def test_dotted_overrides_are_typed():
    cfg = load_config(
        "paper",
        [
            "optim.lr=1e-3",
            "model.width=0.5",
            "data.batch_size=4",
            "train.amp=false",
            "data.slices_per_epoch=null",
            "optim.epochs=3",
            "model.name=add",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.model.overrides == {"width": 0.5} and cfg.model.name == "add"
    assert cfg.data.batch_size == 4 and cfg.train.amp is False and cfg.optim.epochs == 3
    assert cfg.data.slices_per_epoch is None
    # an int given for a float field becomes a float
    assert load_config("paper", ["optim.lr=1"]).optim.lr == 1.0


def test_parse_value_reads_scientific_notation_that_yaml_keeps_as_text():
    assert yaml.safe_load("1e-3") == "1e-3"  # the YAML 1.1 trap this guards against
    assert parse_value("1e-3") == pytest.approx(0.001)
    assert parse_value("7") == 7 and parse_value("true") is True and parse_value("paper") == "paper"


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.learning_rate=1", "optim.learning_rate"),
        ("bogus.lr=1", "bogus.lr"),
        ("data.batchsize=2", "data.batchsize"),
        ("lr=1", "lr"),
    ],
)
def test_unknown_keys_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("paper", [override])


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=-1", "optim.lr"),
        ("train.task=spleen", "train.task"),
        ("data.batch_size=abc", "data.batch_size"),
        ("train.device=tpu", "train.device"),
        ("data.tumor_share=1.5", "data.tumor_share"),
        ("optim.epochs=2.5", "optim.epochs"),
        ("data.liver_phase=ART", "data.liver_phase"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("paper", [override])


def test_malformed_override_and_unknown_preset():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("paper", ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")


def test_yaml_file_preset_and_round_trip(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  name: add\n  width: 0.25\noptim:\n  epochs: 3\n")
    cfg = load_config(path, ["train.seed=7"])
    assert (cfg.model.name, cfg.model.overrides, cfg.optim.epochs, cfg.train.seed) == (
        "add",
        {"width": 0.25},
        3,
        7,
    )
    assert cfg.optim.lr == pytest.approx(5e-4)  # unspecified keys keep the defaults
    saved = cfg.save(tmp_path / "out" / "config.yaml")
    again = config_from_dict(yaml.safe_load(saved.read_text()))
    assert again.to_dict() == cfg.to_dict()


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("optim:\n  lr: 1.0e-3\n  nesterov_typo: true\n")
    with pytest.raises(ConfigError, match=r"optim\.nesterov_typo"):
        load_config(wrong)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_are_the_paper_preset():
    # the paper's values (§2.3, docs/method.md §3), written out here rather than read from either source
    paper = {"name": "sgd", "lr": 5e-4, "momentum": 0.9, "weight_decay": 1e-4, "step_epochs": 50,
             "gamma": 0.1, "epochs": 150}
    assert Config().to_dict()["optim"] == paper
    assert load_config("paper").to_dict()["optim"] == paper


def test_liver_task_keeps_only_width_of_the_preset_model():
    cfg = load_task_config("cpu-small", "liver", ["optim.epochs=2"])
    assert cfg.model.name == "liver_resunet"
    assert cfg.model.overrides == {"width": 0.25}  # cpu-small's `blocks` describe the tumour network
    assert cfg.train.task == "liver" and cfg.optim.epochs == 2
    explicit = load_task_config("cpu-small", "liver", ["model.name=single_phase"])
    assert explicit.model.name == "single_phase" and "blocks" in explicit.model.overrides
    assert load_task_config("cpu-small", None).train.task == "tumor"


def test_liver_task_trains_with_plain_ce_unless_told():
    assert load_config("cpu-small").train.fg_weight == 5.0  # the preset's tumour-class weight
    assert load_task_config("cpu-small", "tumor").train.fg_weight == 5.0
    assert load_task_config("cpu-small", "liver").train.fg_weight == 1.0
    assert load_task_config("cpu-small", "liver", ["model.name=single_phase"]).train.fg_weight == 1.0
    assert load_task_config("cpu-small", "liver", ["train.fg_weight=3"]).train.fg_weight == 3.0


def test_a_saved_liver_run_config_keeps_its_foreground_weight(tmp_path):
    """A liver run's config.yaml used as a preset reproduces the run, weight included (runs trained before
    the liver task's plain-CE default had 5)."""
    old_run = load_task_config("cpu-small", "liver", ["train.fg_weight=5"])
    saved = tmp_path / "config.yaml"
    old_run.save(saved)
    again = load_task_config(saved, "liver")
    assert again.train.fg_weight == 5.0 and again.train.task == "liver"
    assert load_task_config(saved, "liver", ["train.fg_weight=1"]).train.fg_weight == 1.0


def test_optimizer_choice():
    model = torch.nn.Linear(2, 2)
    sgd, _ = make_optimizer(model, load_config("paper"))
    adamw, _ = make_optimizer(model, load_config("paper", ["optim.name=adamw", "optim.lr=1e-3"]))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["lr"] == 5e-4
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"][0] == 0.9
    with pytest.raises(ConfigError, match="optim.name"):
        load_config("paper", ["optim.name=rmsprop"])


# ---- presets that inherit ---------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text)
    return path


def _same(a, b):
    """Two configs resolve to the same values (their `preset` names aside)."""
    return {**a.to_dict(), "preset": None} == {**b.to_dict(), "preset": None}


def test_a_preset_inherits_its_base_and_states_only_what_differs(tmp_path):
    child = _write(tmp_path / "child.yaml", "base: cpu-small\nmodel:\n  name: add\noptim:\n  epochs: 3\n"
                   "data:\n  preprocess:\n    input_size: 64\n")
    cfg = load_config(child)
    expected = load_config("cpu-small", ["model.name=add", "optim.epochs=3", "data.input_size=64"])
    assert _same(cfg, expected) and cfg.preset == str(child)
    # mappings merge key by key: the model keeps cpu-small's width and blocks, preprocess its crop
    assert cfg.model.overrides == {"width": 0.25, "blocks": [1, 1, 2, 1]} and cfg.data.preprocess.crop is True
    # a chain (a relative .yaml base is read beside the file), the nearest preset winning
    grandchild = _write(tmp_path / "grandchild.yaml", "base: child.yaml\noptim:\n  epochs: 5\n")
    assert _same(load_config(grandchild), load_config(child, ["optim.epochs=5"]))


def test_built_in_presets_inherit_from_paper():
    for name in ("default", "cpu-small"):
        text = (resources.files("mpliver") / "configs" / f"{name}.yaml").read_text()
        assert "\nbase: paper\n" in text, name
    # default.yaml holds only its own keys: no section but data, and data only what differs from paper
    own = yaml.safe_load((resources.files("mpliver") / "configs" / "default.yaml").read_text())
    assert set(own) == {"base", "data"}
    assert set(own["data"]) == {"preprocess", "liver_input_size", "intensity_aug", "faint_lesion_cnr"}


def test_preset_cycle_and_unknown_base_are_refused_in_one_line(tmp_path):
    a = _write(tmp_path / "a.yaml", "base: b.yaml\noptim:\n  epochs: 2\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"preset cycle: a -> b -> a") as info:
        load_config(a)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"preset cycle: self -> self"):
        load_config(_write(tmp_path / "self.yaml", "base: self.yaml\n"))
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'") as info:
        load_config(_write(tmp_path / "orphan.yaml", "base: nope\n"))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(_write(tmp_path / "lost.yaml", "base: missing.yaml\n"))


# ---- the legacy flat keys and the nested pre-processing ---------------------------------------------------


def test_flat_keys_map_onto_the_nested_preprocess_config():
    flat = load_config("paper", ["data.input_size=96", "data.crop_to_liver=true", "data.registration=liver"])
    nested = load_config("paper", ["data.preprocess.input_size=96", "data.preprocess.crop=true",
                                   "data.preprocess.registration=liver"])
    pre = flat.data.preprocess
    assert (pre.input_size, pre.crop, pre.registration) == (96, True, "liver") and _same(flat, nested)
    saved = flat.to_dict()["data"]
    assert not {"input_size", "crop_to_liver", "registration"} & set(saved)
    # every PreprocessConfig field is settable, typed, and checked by PreprocessConfig itself
    tuned = load_config("paper", ["data.preprocess.margin_mm=5", "data.preprocess.window=[-100, 200]"])
    assert tuned.data.preprocess.margin_mm == 5.0 and tuned.data.preprocess.window == (-100.0, 200.0)
    with pytest.raises(ConfigError, match=r"data\.preprocess\.context_slices must be odd"):
        load_config("paper", ["data.preprocess.context_slices=2"])
    with pytest.raises(ConfigError, match=r"unknown config key 'data\.preprocess\.margin'"):
        load_config("paper", ["data.preprocess.margin=5"])
    # an error names the key as the user typed it
    with pytest.raises(ConfigError, match=r"^data\.registration must be one of"):
        load_config("paper", ["data.registration=affine"])
    with pytest.raises(ConfigError, match=r"^data\.input_size must be >= 16 \(got 8\)"):
        load_config("paper", ["data.input_size=8"])
    with pytest.raises(ConfigError, match=r"^data\.input_size must be int"):
        load_config("paper", ["data.input_size=big"])


OLD_RUN = {  # the config.yaml of a run written before `data` held `preprocess`
    "model": {"name": "paper", "width": 0.25},
    "optim": {"name": "sgd", "lr": 0.0005, "epochs": 2},
    "data": {"batch_size": 4, "input_size": 96, "crop_to_liver": True, "registration": "tumor-center"},
    "train": {"task": "tumor", "device": "cpu"},
    "preset": "cpu-small",
}


def test_an_old_run_folder_loads_and_compares_equal(tmp_path):
    old = config_from_dict(OLD_RUN)
    pre = old.data.preprocess
    assert (pre.input_size, pre.crop, pre.registration) == (96, True, "tumor-center")
    # the same run today compares equal: `train --resume` and crossval's run check accept it
    today = load_config("paper", ["model.width=0.25", "optim.epochs=2", "data.batch_size=4",
                                  "data.input_size=96", "data.crop_to_liver=true", "train.device=cpu"])
    assert config_differences(OLD_RUN, today.to_dict(), ignore=RESUME_SAFE_KEYS) == []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(OLD_RUN))
    check_run_config(tmp_path, today)
    assert _same(load_config(tmp_path / "config.yaml"), old)  # reused as a preset
    # a changed size is named as users type it
    bigger = today.override(["data.preprocess.input_size=128"])
    assert config_differences(OLD_RUN, bigger.to_dict()) == [("data.input_size", 96, 128)]
    with pytest.raises(ConfigError, match=r"data\.input_size=96, not 128"):
        check_run_config(tmp_path, bigger)
    both = {**OLD_RUN, "data": {**OLD_RUN["data"], "preprocess": {"input_size": 64}}}
    with pytest.raises(ConfigError, match=r"both data\.input_size and data\.preprocess\.input_size"):
        config_from_dict(both)


# ---- one validation style ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs, key", [
    (ModelChoice, {"name": ""}, "name"),
    (OptimConfig, {"lr": 0.0}, "lr"),
    (OptimConfig, {"momentum": 1.0}, "momentum"),
    (DataConfig, {"scale_min": 2.0}, "scale_min"),
    (DataConfig, {"preprocess": PreprocessConfig(input_size=8)}, "preprocess.input_size"),
    (TrainConfig, {"threads": 0}, "threads"),
    (TrainConfig, {"task": "spleen"}, "task"),
    (PreprocessConfig, {"keep_slices": "some"}, "keep_slices"),
])
def test_every_config_dataclass_checks_itself_naming_the_key(cls, kwargs, key):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert str(info.value).startswith(f"{key} ") and "(got " in str(info.value)
    built = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):  # no way around the check once built
        setattr(built, next(iter(kwargs)), next(iter(kwargs.values())))


def test_model_choice_is_not_the_architecture_config():
    choice = Config().model
    assert isinstance(choice, ModelChoice) and ModelChoice is not ModelConfig
    model = load_config("cpu-small").to_dict()["model"]  # the YAML keys are unchanged
    assert model == {"name": "paper", "width": 0.25, "blocks": [1, 1, 2, 1]}


def test_model_sections_compare_as_the_network_they_build(tmp_path):
    """A run folder is reused when its model section spells the same network another way (a default given
    or left out), and refused, naming the field, when the network differs."""
    base = load_config("cpu-small", ["model.name=paper"])
    spelled = base.override(["model.urim=true", "model.backbone=resnext50"])
    assert config_differences(base.to_dict(), spelled.to_dict()) == []
    base.save(tmp_path / "config.yaml")
    check_run_config(tmp_path, spelled)
    other = base.override(["model.urim=false"])
    assert config_differences(base.to_dict(), other.to_dict()) == [("model.urim", True, False)]
    with pytest.raises(ConfigError, match=r"model\.urim=True, not False"):
        check_run_config(tmp_path, other)
    # where either section cannot be built, both compare as written: the keys the user typed are named
    model = base.to_dict()["model"]
    gone = {**base.to_dict(), "model": {**model, "name": "a_model_since_removed"}}
    assert config_differences(gone, base.to_dict()) == [("model.name", "a_model_since_removed", "paper")]
    typo = {**base.to_dict(), "model": {**model, "witdh": 0.5}}
    assert config_differences(base.to_dict(), typo) == [("model.witdh", None, 0.5)]


def test_liver_phase_any_needs_registered_phases():
    assert load_config("paper", ["data.liver_phase=any"]).data.liver_phase == "any"
    with pytest.raises(ConfigError, match=r"data\.liver_phase .*registered to the PV grid"):
        load_config("paper", ["data.liver_phase=any", "data.registration=none"])


def test_keys_that_only_the_other_task_reads_do_not_refuse_a_run():
    """data.liver_phase changes only liver runs and data.faint_lesion_cnr only tumour runs."""
    tumour, liver = load_config("cpu-small"), load_config("cpu-small", ["train.task=liver"])
    for base, same, differs in ((tumour, "data.liver_phase=any", "data.faint_lesion_cnr=0.5"),
                                (liver, "data.faint_lesion_cnr=0.5", "data.liver_phase=any")):
        assert config_differences(base.to_dict(), base.override([same]).to_dict()) == []
        key = differs.split("=")[0]
        assert [d[0] for d in config_differences(base.to_dict(), base.override([differs]).to_dict())] == [key]
