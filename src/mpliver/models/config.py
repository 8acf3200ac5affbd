"""`ModelConfig`: everything needed to rebuild a model (it travels with a trained bundle)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mpliver.errors import ConfigError, check_known_fields

ARCHS = ("multiphase", "mc_fcn", "mw_unet", "pa_resseg", "liver_resunet", "nnunet2d")
# Aggregations of the multi-phase network (docs/method.md §3 variants); `single` = PV only, one stream.
FUSION_KINDS = ("sam", "add", "mw", "pa", "ilf", "dlf", "single")
BACKBONE_NAMES = ("resnext50", "resnet50", "unet")
# Fields a user may override in `create_model(name, **overrides)`; `name`, `arch` and `fusion` are what a
# registered name means.
FIXED_FIELDS = ("name", "arch", "fusion")


@dataclass(frozen=True)
class ModelConfig:
    """A model's architecture. `width` multiplies every channel count (decoder_channels included);
    `blocks` (ResNet backbones only) overrides the (3, 4, 6, 3) blocks per stage."""

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
    def num_streams(self) -> int:
        """Encoder streams the model runs (a shared encoder counts once per phase here)."""
        if self.arch == "liver_resunet" or self.fusion in ("ilf", "single"):
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
        """Inverse of `to_dict`; unknown keys are a ConfigError."""
        check_known_fields(cls, data, "model config key(s)")
        data = dict(data)
        if data.get("blocks") is not None:
            data["blocks"] = tuple(int(b) for b in data["blocks"])
        return validate_config(cls(**data))


def overridable_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig) if f.name not in FIXED_FIELDS]


def validate_config(cfg: ModelConfig) -> ModelConfig:
    """Refuse combinations the architecture cannot build, with one line that says why."""

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"model {cfg.name!r}: {msg}")

    if cfg.arch not in ARCHS:
        raise bad(f"unknown arch {cfg.arch!r}; valid: {list(ARCHS)}")
    if cfg.fusion not in FUSION_KINDS:
        raise bad(f"unknown fusion {cfg.fusion!r}; valid: {list(FUSION_KINDS)}")
    if cfg.backbone not in BACKBONE_NAMES:
        raise bad(f"unknown backbone {cfg.backbone!r}; valid: {list(BACKBONE_NAMES)}")
    if not isinstance(cfg.width, int | float) or not 0 < cfg.width <= 4:
        raise bad(f"width must be a number in (0, 4], got {cfg.width!r}")
    if cfg.blocks is not None:
        if cfg.backbone == "unet" or cfg.arch in ("mw_unet", "liver_resunet"):
            raise bad("blocks applies to the resnext50/resnet50 backbones only")
        if len(cfg.blocks) != 4 or any(int(b) < 1 for b in cfg.blocks):
            raise bad(f"blocks must be 4 positive block counts (B2-B5), got {cfg.blocks}")
    for field in ("decoder_channels", "in_channels", "urim_layers"):
        if int(getattr(cfg, field)) < 1:
            raise bad(f"{field} must be >= 1, got {getattr(cfg, field)}")
    if cfg.num_classes < 2:
        raise bad(f"num_classes must be >= 2, got {cfg.num_classes}")
    single_input = cfg.arch == "liver_resunet" or cfg.fusion == "single"
    if single_input and cfg.num_phases != 1:
        raise bad(f"uses the PV phase only: num_phases must be 1, got {cfg.num_phases}")
    if not single_input and cfg.num_phases < 2:
        raise bad(f"fuses phases: num_phases must be >= 2, got {cfg.num_phases}")
    if cfg.arch != "multiphase":
        if cfg.urim:
            raise bad("this baseline has no URIM (docs/method.md §3); leave urim=False")
        if cfg.shared_encoder:
            raise bad("shared_encoder applies to the multi-phase network only")
    if cfg.arch == "mw_unet" and cfg.backbone != "unet":
        raise bad("mw_unet is built on U-Net encoders: backbone must be 'unet'")
    if cfg.arch == "nnunet2d" and (cfg.backbone != "unet" or cfg.fusion != "ilf"):
        raise bad("nnunet2d is a plain U-Net over the phases as channels: backbone 'unet', fusion 'ilf'")
    if cfg.arch == "liver_resunet" and cfg.backbone != "unet":
        raise bad("liver_resunet is a residual U-Net: backbone must be 'unet'")
    if cfg.shared_encoder and (single_input or cfg.fusion == "ilf"):
        raise bad("shared_encoder needs more than one stream")
    return cfg
