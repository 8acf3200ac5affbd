"""Training configuration: plain dataclasses, YAML presets and dotted command-line overrides.

A preset is a YAML file in `mpliver/configs/` (`paper`, `cpu-small`, ...) or any YAML path. Overrides such as
`optim.lr=1e-3 model.width=0.5` are applied on top. The `model` section is open: every key except `name` is
passed to `create_model` as an override, so a new model option needs no change here (an option the model
does not know is reported when the model is built). Every other section is closed: an unknown key is a
`ConfigError` naming it. The resolved config is saved as YAML beside each run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mpliver.data.config import REGISTRATIONS
from mpliver.errors import ConfigError
from mpliver.io.atomic import write_text_atomic

TASKS = ("tumor", "liver")
OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda", "gpu")  # gpu: a synonym for cuda
BEST_METRICS = ("val_dice", "val_loss")


@dataclass
class ModelConfig:
    """Which network to build: a registered name plus keyword overrides for `create_model`."""

    name: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
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


@dataclass
class DataConfig:
    """Where the pre-processed slices live and how they are sampled and augmented.

    `input_size`, `crop_to_liver` and `registration` are the pre-processing parameters a run depends on (a
    dataset folder given to `train` is pre-processed with them; a given cache must match them).
    `slices_per_epoch=None` means "the number of tumour-containing training slices" (docs/method.md §3), so
    that the tumour share does not change what an epoch is. `batch_size` is per process: under torchrun the
    global batch is `batch_size x world size`.
    """

    cache: str | None = None
    batch_size: int = 16
    num_workers: int = 2
    tumor_share: float = 0.5
    slices_per_epoch: int | None = None
    input_size: int = 512
    crop_to_liver: bool = False
    registration: str = "tumor-center"
    shift: float = 0.1
    rotate_deg: float = 15.0
    scale_min: float = 0.85
    scale_max: float = 1.15
    val_fraction: float = 0.15
    val_max_slices: int | None = None
    liver_input_size: int | None = None  # the stage-1 liver model's whole-slice size; None = input_size
    mask_jitter: int = 0  # training: dilate/erode the liver mask in plane by up to this many pixels (0 = off)
    intensity_aug: bool = False  # training: MONAI intensity augmentation per phase (data/transforms.py)


@dataclass
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


@dataclass
class Config:
    """The whole resolved configuration of one training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    def validate(self) -> Config:
        """Check value ranges and choices; raise `ConfigError` naming the offending key."""
        checks = [
            ("train.task", self.train.task in TASKS, f"must be one of {', '.join(TASKS)}"),
            ("train.device", self.train.device in DEVICES, f"must be one of {', '.join(DEVICES)}"),
            ("train.best_metric", self.train.best_metric in BEST_METRICS, f"must be one of {BEST_METRICS}"),
            ("train.val_every", self.train.val_every >= 1, "must be >= 1"),
            ("train.fg_weight", self.train.fg_weight > 0, "must be > 0"),
            ("optim.name", self.optim.name in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
            ("optim.lr", self.optim.lr > 0, "must be > 0"),
            ("optim.epochs", self.optim.epochs >= 1, "must be >= 1"),
            ("optim.step_epochs", self.optim.step_epochs >= 1, "must be >= 1"),
            ("optim.momentum", 0 <= self.optim.momentum < 1, "must be in [0, 1)"),
            ("optim.weight_decay", self.optim.weight_decay >= 0, "must be >= 0"),
            ("data.batch_size", self.data.batch_size >= 1, "must be >= 1"),
            ("data.num_workers", self.data.num_workers >= 0, "must be >= 0"),
            ("data.tumor_share", 0 <= self.data.tumor_share <= 1, "must be in [0, 1]"),
            ("data.input_size", self.data.input_size >= 16, "must be >= 16"),
            ("data.val_fraction", 0 <= self.data.val_fraction < 1, "must be in [0, 1)"),
            (
                "data.scale_min",
                0 < self.data.scale_min <= self.data.scale_max,
                "must be > 0 and <= data.scale_max",
            ),
            ("model.name", bool(self.model.name), "must not be empty"),
            ("data.registration", self.data.registration in REGISTRATIONS, f"must be one of {REGISTRATIONS}"),
        ]
        if self.train.threads is not None:
            checks.append(("train.threads", self.train.threads >= 1, "must be >= 1 (or null)"))
        if self.data.slices_per_epoch is not None:
            checks.append(("data.slices_per_epoch", self.data.slices_per_epoch >= 1, "must be >= 1"))
        checks.append(("data.mask_jitter", self.data.mask_jitter >= 0, "must be >= 0"))
        if self.data.liver_input_size is not None:
            checks.append(("data.liver_input_size", self.data.liver_input_size >= 16,
                           "must be >= 16 (or null)"))
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"{key} {why} (got {_get(self, key)!r})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict; the model section is flat (`name` plus its overrides), as in the presets."""
        out = dataclasses.asdict(self)
        model = out.pop("model")
        out = {"model": {"name": model["name"], **model["overrides"]}, **out}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML (atomically)."""
        write_text_atomic(path, self.to_yaml())
        return Path(path)


# ---- presets ----------------------------------------------------------------------------------------------


def list_presets() -> list[str]:
    """Names of the built-in YAML presets."""
    folder = resources.files("mpliver") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_text(preset: str | Path) -> tuple[str, str]:
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError("config file not found", path)
        return path.read_text(), str(path)
    resource = resources.files("mpliver") / "configs" / f"{preset}.yaml"
    if not resource.is_file():
        raise ConfigError(f"unknown preset '{preset}' (built-in presets: {', '.join(list_presets())})")
    return resource.read_text(), str(preset)


def load_config(preset: str | Path | None = "paper", overrides: typing.Sequence[str] = ()) -> Config:
    """Build a `Config` from a preset (name or YAML path; None = the defaults) plus `key=value` overrides."""
    config = Config()
    if preset is not None:
        text, source = _preset_text(preset)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML ({str(exc).splitlines()[0]})", source) from None
        if not isinstance(data, dict):
            raise ConfigError("a config file must hold a mapping of sections", source)
        config = config_from_dict(data, source=source)
        config.preset = str(preset)
    return apply_overrides(config, overrides).validate()


# Model options of a preset that describe the tumour network's backbone and do not apply to `liver_resunet`.
_LIVER_MODEL_KEYS = ("width",)


def load_task_config(
    preset: str | Path | None, task: str | None, overrides: typing.Sequence[str] = ()
) -> Config:
    """`load_config` for a task. For `task='liver'` without an explicit `model.name=`, the model becomes the
    stage-1 `liver_resunet` and, of the preset's model options, only `width` carries over (a preset's
    `blocks` or `backbone` describe the tumour network); a preset's `data.liver_input_size` becomes the liver
    run's `data.input_size`."""
    if task is None:
        return load_config(preset, overrides)
    explicit_model = any(o.strip().startswith("model.name=") for o in overrides)
    if task != "liver":
        return load_config(preset, [f"train.task={task}", *overrides])
    if explicit_model:
        config = load_config(preset, ["train.task=liver", *overrides])
    else:
        base = load_config(preset)
        base.model = ModelConfig("liver_resunet", {k: v for k, v in base.model.overrides.items()
                                                   if k in _LIVER_MODEL_KEYS})
        config = apply_overrides(base, ["train.task=liver", *overrides]).validate()
    # a preset's `data.liver_input_size` sizes the liver stage, unless the command line sets data.input_size;
    # then it is cleared, so that the run's saved config.yaml, reused as a preset, keeps the size it ran at
    explicit_size = any(o.partition("=")[0].strip() == "data.input_size" for o in overrides)
    if config.data.liver_input_size and not explicit_size:
        config.data.input_size = int(config.data.liver_input_size)
    config.data.liver_input_size = None
    return config


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a `Config` from a nested dict such as a saved `config.yaml`; unknown keys are `ConfigError`s."""
    config = Config()
    for section, values in data.items():
        if section == "preset":
            config.preset = values
            continue
        if section not in ("model", "optim", "data", "train"):
            raise ConfigError(f"{source}: unknown config section '{section}' (model, optim, data, train)")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping")
        for key, value in values.items():
            _set(config, f"{section}.{key}", value)
    return config.validate()


def apply_overrides(config: Config, overrides: typing.Sequence[str]) -> Config:
    """Apply `section.key=value` strings to a copy of `config`; values are parsed as YAML."""
    config = dataclasses.replace(
        config,
        model=ModelConfig(config.model.name, dict(config.model.overrides)),
        optim=dataclasses.replace(config.optim),
        data=dataclasses.replace(config.data),
        train=dataclasses.replace(config.train),
    )
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like section.key=value (e.g. optim.lr=1e-3)")
        _set(config, key, parse_value(raw.strip()))
    return config


def parse_value(raw: str) -> Any:
    """Parse an override value: numbers (also `1e-3`, which YAML 1.1 keeps as text), then YAML."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return raw


# ---- comparing the configs of runs ------------------------------------------------------------------------

# keys that change how a run executes but not what it computes: a rerun or a resume may change them
EXECUTION_KEYS = frozenset({"data.num_workers", "data.cache", "train.progress", "train.tensorboard",
                            "train.device"})
# what `train --resume` may also change: more (or fewer) epochs continue the same schedule from the checkpoint
RESUME_SAFE_KEYS = EXECUTION_KEYS | {"optim.epochs"}


def config_differences(saved: typing.Mapping[str, Any], current: typing.Mapping[str, Any],
                       ignore: typing.Collection[str] = EXECUTION_KEYS) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) for every key of two `Config.to_dict()`s that differs, except
    `ignore`. A key missing from `saved` (added to mpliver after that run was written) counts as its default,
    since that is what the run used; the open `model` section has no defaults."""
    defaults = Config().to_dict()
    out = []
    for section in ("model", "optim", "data", "train"):
        old, new = dict(saved.get(section) or {}), dict(current.get(section) or {})
        if section != "model":
            old = {**defaults[section], **old}
        for key in sorted(set(old) | set(new)):
            name = f"{section}.{key}"
            if name not in ignore and old.get(key) != new.get(key):
                out.append((name, old.get(key), new.get(key)))
    return out


def describe_differences(diffs: typing.Sequence[tuple[str, Any, Any]]) -> str:
    """'data.input_size=96, not 128; optim.lr=0.01, not 0.1' (the saved value first)."""
    return "; ".join(f"{key}={old!r}, not {new!r}" for key, old, new in diffs)


# ---- typed access by dotted key ---------------------------------------------------------------------------


def _split(key: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    if section not in ("model", "optim", "data", "train") or not name:
        raise ConfigError(
            f"unknown config key '{key}' (keys look like model.width, optim.lr, data.batch_size)"
        )
    return section, name


def _get(config: Config, key: str) -> Any:
    section, name = _split(key)
    if section == "model":
        return config.model.name if name == "name" else config.model.overrides.get(name)
    return getattr(getattr(config, section), name)


def _set(config: Config, key: str, value: Any) -> None:
    section, name = _split(key)
    if section == "model":
        if name == "name":
            config.model.name = _coerce(value, str, key)
        elif "." in name:
            raise ConfigError(f"unknown config key '{key}'")
        else:
            config.model.overrides[name] = value
        return
    target = getattr(config, section)
    hints = typing.get_type_hints(type(target))
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(target))
        raise ConfigError(f"unknown config key '{key}' (known in '{section}': {known})")
    setattr(target, name, _coerce(value, hints[name], key))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` to the annotated type, or raise `ConfigError` naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - every field above is one of these types
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key} must be {name}, got {value!r}")
