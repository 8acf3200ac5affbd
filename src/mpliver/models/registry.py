"""The model registry, in timm's manner: model files register themselves, this module only looks them up.

Two tables, both filled by decorators in the model files when `mpliver.models` imports them:
- `register_arch("arch")` on a `SegmentationModel` subclass: the network class that builds every config whose
  `arch` field names it (a bundle stores the config, so this is how a saved model is rebuilt);
- `register_model("name")` on a function returning a `ModelConfig`: a named default, what
  `create_model("name", **overrides)` starts from.

This module keeps the generic checks (`validate_config`): the config's own fields, the options an
architecture says it supports, then the architecture's `check_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from mpliver.errors import ConfigError
from mpliver.models.base import SegmentationModel
from mpliver.models.config import ModelConfig, check_fields, config_error, overridable_fields

ModelClass = TypeVar("ModelClass", bound=type[SegmentationModel])
ConfigFn = Callable[[], ModelConfig]

_MODELS: dict[str, ConfigFn] = {}  # registered name -> its default config
_ARCHS: dict[str, type[SegmentationModel]] = {}  # `ModelConfig.arch` -> the class that builds it


def register_arch(arch: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: the `SegmentationModel` subclass that builds configs with `arch=arch`."""

    def wrap(cls: ModelClass) -> ModelClass:
        if not (isinstance(cls, type) and issubclass(cls, SegmentationModel)):
            raise TypeError(f"arch {arch!r}: {cls!r} is not a SegmentationModel subclass")
        if arch in _ARCHS:
            raise ValueError(f"arch {arch!r} is already registered (by {_ARCHS[arch].__qualname__})")
        _ARCHS[arch] = cls
        return cls

    return wrap


def register_model(name: str) -> Callable[[ConfigFn], ConfigFn]:
    """Decorator: register a function returning the default `ModelConfig` of `name`."""

    def wrap(fn: ConfigFn) -> ConfigFn:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def list_archs() -> list[str]:
    """Registered architectures (`ModelConfig.arch` values), sorted."""
    return sorted(_ARCHS)


def default_config(name: str) -> ModelConfig:
    """The registered default config of `name`; an unknown name is a ConfigError listing the valid ones."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    return _MODELS[name]()


def validate_config(cfg: ModelConfig) -> ModelConfig:
    """Refuse combinations the architecture cannot build, with one line that says why."""
    builder = _ARCHS.get(cfg.arch)
    if builder is None:
        raise config_error(cfg, f"unknown arch {cfg.arch!r}; valid: {list_archs()}")
    check_fields(cfg)
    if cfg.urim and not builder.supports_urim:
        raise config_error(cfg, "this baseline has no URIM (docs/method.md §3); leave urim=False")
    if cfg.shared_encoder and not builder.supports_shared_encoder:
        raise config_error(cfg, "shared_encoder applies to the multi-phase network only")
    if cfg.shared_encoder and cfg.num_streams == 1:
        raise config_error(cfg, "shared_encoder needs more than one stream")
    builder.check_config(cfg)
    return cfg


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The default config of `name` with `overrides` applied and validated."""
    cfg = default_config(name)
    valid = overridable_fields()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"model {name!r}: unknown override(s) {unknown}; valid: {', '.join(valid)}")
    if overrides.get("blocks") is not None:
        overrides["blocks"] = tuple(int(b) for b in overrides["blocks"])
    return validate_config(dataclasses.replace(cfg, **overrides))


def build_model(config: ModelConfig) -> SegmentationModel:
    """The one build path: a model from a config (validated here); `model.config` is that config."""
    return _ARCHS[validate_config(config).arch](config)


def create_model(name: str, **overrides: Any) -> SegmentationModel:
    """A registered model, e.g. `create_model("paper", width=0.25)`. Unknown names or overrides raise a
    ConfigError that lists the valid ones."""
    return build_model(resolve_config(name, **overrides))
