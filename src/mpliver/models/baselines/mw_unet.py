"""MW-UNet (comparison baseline, docs/method.md §3): U-Net encoders per phase mixed by phase weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.backbones import UNetDecoder, UNetEncoder
from mpliver.models.base import SegmentationModel
from mpliver.models.config import ModelConfig, config_error
from mpliver.models.fusion import MWFusion
from mpliver.models.registry import register_arch, register_model


@register_arch("mw_unet")
class MWUNet(SegmentationModel):
    """At each of the five levels the phase features are mixed with one softmax-normalised weight per phase
    (`MWFusion`); the mixes feed one U-Net decoder through its skips. The streams stay independent (no eq. 2
    feedback), as in MW-UNet, where the weighting sits on the skip connections."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        self.encoders = nn.ModuleList(UNetEncoder(cfg.in_channels, cfg.width) for _ in range(cfg.num_phases))
        channels = (self.encoders[0].stem_channels, *self.encoders[0].stage_channels)
        self.fusions = nn.ModuleList(MWFusion(c, cfg.num_phases) for c in channels)
        self.decoder = UNetDecoder(channels)
        self.classifier = nn.Conv2d(channels[0], cfg.num_classes, 1)

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """U-Net encoders only."""
        if config.backbone != "unet":
            raise config_error(config, "mw_unet is built on U-Net encoders: backbone must be 'unet'")

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = self.check_inputs(phases)
        per_phase = [enc(x) for enc, x in zip(self.encoders, xs, strict=True)]
        levels = [list(level) for level in zip(*per_phase, strict=True)]  # per level: one map per phase
        mixed = [fusion(level)[0] for fusion, level in zip(self.fusions, levels, strict=True)]
        return {"logits": self.classifier(self.decoder(mixed))}


@register_model("mw_unet")
def _mw_unet() -> ModelConfig:
    return ModelConfig(name="mw_unet", arch="mw_unet", fusion="mw", backbone="unet", urim=False,
                       feedback=False)
