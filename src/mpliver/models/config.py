"""`ModelConfig`: everything needed to rebuild a model (it travels with a trained bundle)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mpliver.errors import ConfigError, check_known_fields

# Aggregations of the multi-phase network (docs/method.md §3 variants); `single` = PV only, one stream.
FUSION_KINDS = ("sam", "add", "mw", "pa", "ilf", "dlf", "single")
PV_ONLY = "single"  # the fusion kind of a model that reads the PV phase only (see `input_phases`)
BACKBONE_NAMES = ("resnext50", "resnet50", "unet")
# Fields a user may override in `create_model(name, **overrides)`; `name`, `arch` and `fusion` are what a
# registered name means.
FIXED_FIELDS = ("name", "arch", "fusion")


@dataclass(frozen=True)
class ModelConfig:
    """A model's architecture. `arch` names the registered network class that builds it; `width` multiplies
    every channel count (decoder_channels included); `blocks` (ResNet backbones only) overrides the
    (3, 4, 6, 3) blocks per stage."""

    name: str
    arch: str = "multiphase"
    fusion: str = "sam"
    num_phases: int = 2
    backbone: str = "resnext50"
    width: float = 1.0
    blocks: tuple[int, ...] | None = None
    decoder_channels: int = 128
    urim: bool = True
    urim_layers: int = 4
    feedback: bool = True  # eq. 2: fused features flow back into the streams
    shared_encoder: bool = False
    in_channels: int = 3
    num_classes: int = 2

    @property
    def input_phases(self) -> int:
        """Phase tensors the model reads from the front of its input list: 1 for a PV-only model (fusion
        `single`), which ignores any further phases, else `num_phases`. The one statement of that rule."""
        return 1 if self.fusion == PV_ONLY else self.num_phases

    @property
    def num_streams(self) -> int:
        """Encoder streams the model runs (a shared encoder counts once per phase here)."""
        if self.input_phases == 1 or self.fusion == "ilf":
            return 1
        return self.num_phases

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict."""
        d = dataclasses.asdict(self)
        if d["blocks"] is not None:
            d["blocks"] = list(d["blocks"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys and invalid field values are a ConfigError (the architecture's
        own checks run when the model is built)."""
        check_known_fields(cls, data, "model config key(s)")
        data = dict(data)
        if data.get("blocks") is not None:
            data["blocks"] = tuple(int(b) for b in data["blocks"])
        return check_fields(cls(**data))


def overridable_fields() -> list[str]:
    """Fields `create_model` accepts as overrides (all but what a registered name means)."""
    return [f.name for f in dataclasses.fields(ModelConfig) if f.name not in FIXED_FIELDS]


def config_error(cfg: ModelConfig, msg: str) -> ConfigError:
    """A ConfigError that names the model, as every config check reports."""
    return ConfigError(f"model {cfg.name!r}: {msg}")


def check_fields(cfg: ModelConfig) -> ModelConfig:
    """The checks that need no architecture: known kinds, value ranges and the phase count, one line each."""
    if cfg.fusion not in FUSION_KINDS:
        raise config_error(cfg, f"unknown fusion {cfg.fusion!r}; valid: {list(FUSION_KINDS)}")
    if cfg.backbone not in BACKBONE_NAMES:
        raise config_error(cfg, f"unknown backbone {cfg.backbone!r}; valid: {list(BACKBONE_NAMES)}")
    if not isinstance(cfg.width, int | float) or not 0 < cfg.width <= 4:
        raise config_error(cfg, f"width must be a number in (0, 4], got {cfg.width!r}")
    if cfg.blocks is not None:
        if cfg.backbone == "unet":
            raise config_error(cfg, "blocks applies to the resnext50/resnet50 backbones only")
        if len(cfg.blocks) != 4 or any(int(b) < 1 for b in cfg.blocks):
            raise config_error(cfg, f"blocks must be 4 positive block counts (B2-B5), got {cfg.blocks}")
    for field in ("decoder_channels", "in_channels", "urim_layers"):
        if int(getattr(cfg, field)) < 1:
            raise config_error(cfg, f"{field} must be >= 1, got {getattr(cfg, field)}")
    if cfg.num_classes < 2:
        raise config_error(cfg, f"num_classes must be >= 2, got {cfg.num_classes}")
    if cfg.num_phases != cfg.input_phases:
        raise config_error(cfg, f"uses the PV phase only: num_phases must be 1, got {cfg.num_phases}")
    if cfg.fusion != PV_ONLY and cfg.num_phases < 2:
        raise config_error(cfg, f"fuses phases: num_phases must be >= 2, got {cfg.num_phases}")
    return cfg
