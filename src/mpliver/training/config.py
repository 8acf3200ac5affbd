"""Training configuration: frozen dataclasses, YAML presets (which may inherit) and loading with overrides.

The tree of one run:

    Config
    ├── model: ModelChoice      which registered model, plus keyword overrides for `create_model`
    ├── optim: OptimConfig      optimiser and step schedule
    ├── data:  DataConfig       cache, sampling, augmentation, validation share
    │   └── preprocess: PreprocessConfig   how a case becomes network input (mpliver.data.config)
    ├── train: TrainConfig      seed, device, precision, checkpoints, task
    └── preset                  the preset it was loaded from

A preset is a YAML file in `mpliver/configs/` (`paper`, `cpu-small`, ...) or any YAML path. A preset may
start with `base: <preset>`: it is then merged onto that preset (mappings key by key, other values replace),
so it states only what differs; `base` is a built-in preset name, or a `.yaml` path relative to the file.
Overrides such as `optim.lr=1e-3 model.width=0.5` are applied on top (`training.overrides`, which also maps
the legacy flat keys `data.input_size`, `data.crop_to_liver` and `data.registration`).

The `model` section is open: every key except `name` is passed to `create_model`, so a new model option
needs no change here (an option the model does not know is reported when the model is built). Every other
section is closed: an unknown key is a `ConfigError` naming it. Each dataclass checks its values in
`__post_init__` with `mpliver.data.config.require`, as every config dataclass of mpliver does. The resolved
config is saved as YAML beside each run.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mpliver.data.config import LIVER_PHASES, PreprocessConfig, require
from mpliver.errors import ConfigError
from mpliver.io.atomic import write_text_atomic
from mpliver.training.overrides import (
    apply_overrides,
    coerce,
    deep_merge,
    flatten,
    migrate_legacy,
    override_keys,
    short_key,
)

TASKS = ("tumor", "liver")
OPTIMIZERS = ("sgd", "adamw")
LOSSES = ("ce", "dice_ce")  # the paper's cross-entropy; nnU-Net's CE + soft Dice
DEVICES = ("auto", "cpu", "cuda", "gpu")  # gpu: a synonym for cuda
BEST_METRICS = ("val_dice", "val_loss")
SECTIONS = ("model", "optim", "data", "train")


@dataclass(frozen=True)
class ModelChoice:
    """Which network to build: a registered name plus keyword overrides for `create_model` (the model's own
    architecture config is `mpliver.models.ModelConfig`)."""

    name: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.name), "name", "must not be empty", self.name)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum and a step schedule; defaults: the paper's (lr 5e-4, /10 every 50 of 150 epochs).
    `name: adamw` swaps in AdamW (beta1 = `momentum`) for short from-scratch runs."""

    name: str = "sgd"
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_epochs: int = 50
    gamma: float = 0.1
    epochs: int = 150

    def __post_init__(self) -> None:
        require(self.name in OPTIMIZERS, "name", f"must be one of {', '.join(OPTIMIZERS)}", self.name)
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.epochs >= 1, "epochs", "must be >= 1", self.epochs)
        require(self.step_epochs >= 1, "step_epochs", "must be >= 1", self.step_epochs)
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)", self.momentum)
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0", self.weight_decay)


@dataclass(frozen=True)
class DataConfig:
    """Where the pre-processed slices live and how they are sampled and augmented.

    `preprocess` holds the pre-processing a run depends on (a dataset folder given to `train` is
    pre-processed with it, with the liver task's whole slices; a given cache must match its input size).
    `slices_per_epoch=None` means "the number of tumour-containing training slices" (docs/method.md §3), so
    that the tumour share does not change what an epoch is. `batch_size` is per process: under torchrun the
    global batch is `batch_size x world size`.
    """

    cache: str | None = None
    batch_size: int = 16
    num_workers: int = 2
    tumor_share: float = 0.5
    slices_per_epoch: int | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig.paper)
    shift: float = 0.1
    rotate_deg: float = 15.0
    scale_min: float = 0.85
    scale_max: float = 1.15
    val_fraction: float = 0.15
    val_max_slices: int | None = None
    liver_input_size: int | None = None  # the stage-1 liver model's whole-slice size; None = input_size
    mask_jitter: int = 0  # training: dilate/erode the liver mask in plane by up to this many pixels (0 = off)
    intensity_aug: bool = False  # training: MONAI intensity augmentation per phase (data/transforms.py)
    # training: lesions fainter than this CNR in every phase the model reads are left out of the loss
    # (0 = off; data/lesion_contrast.py)
    faint_lesion_cnr: float = 0.0
    # training, liver task: the phase each slice is read from. primary: the first phase (what predict gives
    # the liver model); any: a phase of the case drawn per slice (registered to the PV grid the label is on),
    # so that the model meets every contrast the cohort holds. Validation always reads the primary phase.
    liver_phase: str = "primary"

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        require(self.num_workers >= 0, "num_workers", "must be >= 0", self.num_workers)
        require(0 <= self.tumor_share <= 1, "tumor_share", "must be in [0, 1]", self.tumor_share)
        size = self.preprocess.input_size
        require(size >= 16, "preprocess.input_size", "must be >= 16", size)
        require(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)", self.val_fraction)
        require(0 < self.scale_min <= self.scale_max, "scale_min", "must be > 0 and <= data.scale_max",
                self.scale_min)
        spe = self.slices_per_epoch
        require(spe is None or spe >= 1, "slices_per_epoch", "must be >= 1 (or null)", spe)
        require(self.mask_jitter >= 0, "mask_jitter", "must be >= 0", self.mask_jitter)
        require(self.faint_lesion_cnr >= 0, "faint_lesion_cnr", "must be >= 0", self.faint_lesion_cnr)
        require(self.liver_phase in LIVER_PHASES, "liver_phase", f"must be one of {', '.join(LIVER_PHASES)}",
                self.liver_phase)
        require(self.liver_phase == "primary" or self.preprocess.registration != "none", "liver_phase",
                "needs the other phases registered to the PV grid that holds the label "
                "(data.registration: liver or tumor-center, not none)", self.liver_phase)
        lis = self.liver_input_size
        require(lis is None or lis >= 16, "liver_input_size", "must be >= 16 (or null)", lis)


@dataclass(frozen=True)
class TrainConfig:
    """Run-level settings: seed, device, precision, validation and checkpoints, and the task."""

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    val_every: int = 1
    best_metric: str = "val_dice"
    checkpoint_dir: str = "checkpoints"
    task: str = "tumor"
    progress: bool = True
    tensorboard: bool = True
    find_unused_parameters: bool = False
    threads: int | None = None  # CPU threads of torch (None = torch's default: one per core)
    fg_weight: float = 1.0  # weight of the foreground class in both CE terms; 1.0 = the paper's plain CE
    loss: str = "ce"  # ce: the paper's; dice_ce: CE + soft Dice on every term, as nnU-Net trains
    # Decay per step of an exponential moving average of the weights (0 = off; 0.99 averages over ~100 steps).
    # Validation, the best checkpoint and everything that loads the run then use the averaged weights.
    ema: float = 0.0

    def __post_init__(self) -> None:
        require(self.task in TASKS, "task", f"must be one of {', '.join(TASKS)}", self.task)
        require(self.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}", self.device)
        require(self.best_metric in BEST_METRICS, "best_metric", f"must be one of {BEST_METRICS}",
                self.best_metric)
        require(self.val_every >= 1, "val_every", "must be >= 1", self.val_every)
        require(self.fg_weight > 0, "fg_weight", "must be > 0", self.fg_weight)
        require(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}", self.loss)
        require(self.threads is None or self.threads >= 1, "threads", "must be >= 1 (or null)", self.threads)
        require(0.0 <= self.ema < 1.0, "ema", "must be in [0, 1) (0 = off)", self.ema)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one training run."""

    model: ModelChoice = field(default_factory=ModelChoice)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict; the model section is flat (`name` plus its overrides), as in the presets."""
        data = {**dataclasses.asdict(self.data), "preprocess": self.data.preprocess.to_dict()}
        return {
            "model": {"name": self.model.name, **self.model.overrides},
            "optim": dataclasses.asdict(self.optim),
            "data": data,
            "train": dataclasses.asdict(self.train),
            "preset": self.preset,
        }

    def to_yaml(self) -> str:
        """The resolved config as YAML, in the presets' layout."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML (atomically)."""
        write_text_atomic(path, self.to_yaml())
        return Path(path)

    def override(self, overrides: Sequence[str]) -> Config:
        """A copy with `section.key=value` strings applied (values parsed as YAML), checked as a whole."""
        if not overrides:
            return self
        return config_from_dict(apply_overrides(self.to_dict(), overrides), source="override")


# ---- building from dicts ----------------------------------------------------------------------------------


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """Build a `Config` from a nested dict such as a saved `config.yaml` (also one written before `data` held
    `preprocess`, with its flat keys); unknown keys and bad values are `ConfigError`s naming the key."""
    data = migrate_legacy(data, source)
    sections: dict[str, Any] = {}
    for section, values in data.items():
        if section == "preset":
            sections["preset"] = values
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown config section '{section}' ({', '.join(SECTIONS)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        sections[section] = _model_choice(values) if section == "model" else _build(
            typing.get_type_hints(Config)[section], values, section)
    return Config(**sections)


def _model_choice(values: Mapping[str, Any]) -> ModelChoice:
    for name in values:
        if "." in str(name):
            raise ConfigError(f"unknown config key 'model.{name}'")
    overrides = {k: v for k, v in values.items() if k != "name"}
    if "name" not in values:
        return ModelChoice(overrides=overrides)
    name = coerce(values["name"], str, "model.name")
    return _construct(ModelChoice, {"name": name, "overrides": overrides}, "model")


def _build(cls: type, values: Any, prefix: str) -> Any:
    """`cls(**values)` with each value coerced to its annotation (nested dataclasses from mappings); an
    unknown key or a bad value is a `ConfigError` that names its dotted key under `prefix`."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}"
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown config key '{short_key(key)}' (known in '{prefix}': {known})")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = value if isinstance(value, hint) else _build(hint, value, key)
        else:
            kwargs[name] = coerce(value, hint, short_key(key))
    return _construct(cls, kwargs, prefix)


def _construct(cls: type, kwargs: dict[str, Any], prefix: str) -> Any:
    """`cls(**kwargs)`; its `require` error, which starts with the field's key, gets the section prefix
    (and a legacy flat key is named as users type it)."""
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        key, _, why = f"{prefix}.{exc}".partition(" ")
        raise ConfigError(f"{short_key(key)} {why}") from None


# ---- presets ----------------------------------------------------------------------------------------------


def list_presets() -> list[str]:
    """Names of the built-in YAML presets."""
    folder = resources.files("mpliver") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_text(preset: str | Path, relative_to: Path | None = None) -> tuple[str, str]:
    """(YAML text, identity) of a preset: a built-in name or a YAML path (from `relative_to` if relative)."""
    path = Path(preset)
    is_path = path.suffix in (".yaml", ".yml") or (relative_to is None and path.exists())
    if is_path:
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise ConfigError("config file not found", path)
        return path.read_text(), str(path.resolve())
    resource = resources.files("mpliver") / "configs" / f"{preset}.yaml"
    if not resource.is_file():
        raise ConfigError(f"unknown preset '{preset}' (built-in presets: {', '.join(list_presets())})")
    return resource.read_text(), str(preset)


def preset_dict(preset: str | Path, relative_to: Path | None = None,
                chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The nested dict of a preset with its `base` chain merged in (the preset's own keys win); a cycle of
    bases is a `ConfigError` naming it (`a -> b -> a`)."""
    text, source = _preset_text(preset, relative_to)
    if source in chain:
        raise ConfigError(f"preset cycle: {' -> '.join(Path(s).stem for s in (*chain, source))}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML ({str(exc).splitlines()[0]})", source) from None
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping of sections", source)
    data = migrate_legacy(data, source)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"base must name a preset, got {base!r}", source)
    folder = Path(source).parent if Path(source).is_absolute() else None
    return deep_merge(preset_dict(base, folder, (*chain, source)), data)


def load_config(preset: str | Path | None = "paper", overrides: Sequence[str] = ()) -> Config:
    """Build a `Config` from a preset (name or YAML path; None = the defaults) plus `key=value` overrides."""
    config = Config()
    if preset is not None:
        data = preset_dict(preset)
        data.pop("preset", None)
        source = str(preset)
        config = replace(config_from_dict(data, source=source), preset=source)
    return config.override(overrides)


# Model options of a preset that describe the tumour network's backbone and do not apply to `liver_resunet`.
_LIVER_MODEL_KEYS = ("width",)


def load_task_config(preset: str | Path | None, task: str | None, overrides: Sequence[str] = ()) -> Config:
    """`load_config` for a task. For `task='liver'` without an explicit `model.name=`, the model becomes the
    stage-1 `liver_resunet` and, of the preset's model options, only `width` carries over (a preset's
    `blocks` or `backbone` describe the tumour network); a preset's `data.liver_input_size` becomes the liver
    run's input size (`data.input_size`). A preset's `train.fg_weight` is the tumour-class weight: the liver
    run trains with plain CE (weight 1) unless the command line sets it or the preset is itself a liver run's
    config (its saved config.yaml reproduces the run), since a foreground weight w moves the 0.5 decision to
    p = 1 / (1 + w) and so pushes the liver border outwards (docs/results.md)."""
    if task is None:
        return load_config(preset, overrides)
    if task != "liver":
        return load_config(preset, [f"train.task={task}", *overrides])
    keys = override_keys(overrides)
    base = load_config(preset)
    if "model.name" in keys:
        config = load_config(preset, ["train.task=liver", *overrides])
    else:
        model = ModelChoice("liver_resunet", {k: v for k, v in base.model.overrides.items()
                                              if k in _LIVER_MODEL_KEYS})
        config = replace(base, model=model).override(["train.task=liver", *overrides])
    if "train.fg_weight" not in keys and base.train.task != "liver":  # a liver run's config keeps its own
        config = replace(config, train=replace(config.train, fg_weight=1.0))
    # a preset's `data.liver_input_size` sizes the liver stage, unless the command line sets the input size;
    # then it is cleared, so that the run's saved config.yaml, reused as a preset, keeps the size it ran at
    data = config.data
    if data.liver_input_size and "data.preprocess.input_size" not in keys:
        data = replace(data, preprocess=replace(data.preprocess, input_size=int(data.liver_input_size)))
    return replace(config, data=replace(data, liver_input_size=None))


# ---- comparing the configs of runs ------------------------------------------------------------------------
# (here rather than in `overrides`: the comparison needs `Config`'s defaults, and `overrides` sits below it)

# keys that change how a run executes but not what it computes: a rerun or a resume may change them
EXECUTION_KEYS = frozenset({"data.num_workers", "data.cache", "train.progress", "train.tensorboard",
                            "train.device"})
# what `train --resume` may also change: more (or fewer) epochs continue the same schedule from the checkpoint
RESUME_SAFE_KEYS = EXECUTION_KEYS | {"optim.epochs"}
# keys that only one task reads: a run of the other task computes the same thing whatever they say
TASK_KEYS = {"data.liver_phase": "liver", "data.faint_lesion_cnr": "tumor"}


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       ignore: Collection[str] = EXECUTION_KEYS) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) for every key of two `Config.to_dict()`s that differs, except
    `ignore`. A key missing from `saved` (added to mpliver after that run was written) counts as its default,
    since that is what the run used. The `model` sections compare as the networks they build (today's
    registry defaults filled in), or as written where either cannot be built. A run written with the legacy
    flat keys compares as their nested fields, and keys are named as users type them (`data.input_size`).
    Keys that only the other task reads (TASK_KEYS) are not compared."""
    defaults = Config().to_dict()
    saved, current = migrate_legacy(saved, "saved config"), migrate_legacy(current, "config")
    task = (current.get("train") or {}).get("task", TrainConfig().task)
    ignore = set(ignore) | {key for key, reader in TASK_KEYS.items() if reader != task}
    out = []
    for section in SECTIONS:
        old, new = dict(saved.get(section) or {}), dict(current.get(section) or {})
        if section == "model":
            old, new = _resolved_models(old, new)
        else:
            old = deep_merge(defaults[section], old)
        old_flat = {short_key(k): v for k, v in flatten(old, f"{section}.").items()}
        new_flat = {short_key(k): v for k, v in flatten(new, f"{section}.").items()}
        for key in sorted(set(old_flat) | set(new_flat)):
            if key not in ignore and old_flat.get(key) != new_flat.get(key):
                out.append((key, old_flat.get(key), new_flat.get(key)))
    return out


def _resolved_models(saved: dict[str, Any], current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The networks two `model` sections build, as every field of their `ModelConfig`, so that two spellings
    of one network (`urim: true` given or left to the default) compare equal. Where either section cannot be
    built (a model since renamed, a misspelt or bad override), both compare as written, so the difference
    named is the key the user typed, not every field of a network it could not build."""
    from mpliver.models.registry import resolve_config  # the registry imports torch; config stays light

    def resolve(section: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in section.items() if k != "name"}
        return resolve_config(str(section.get("name", ModelChoice().name)), **options).to_dict()

    try:
        return resolve(saved), resolve(current)
    except (ConfigError, TypeError, ValueError):
        return saved, current


def describe_differences(diffs: Sequence[tuple[str, Any, Any]]) -> str:
    """'data.input_size=96, not 128; optim.lr=0.01, not 0.1' (the saved value first)."""
    return "; ".join(f"{key}={old!r}, not {new!r}" for key, old, new in diffs)
