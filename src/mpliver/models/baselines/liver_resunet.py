"""The stage-1 liver model (docs/method.md §4.3): a small residual U-Net on a 3-slice stack of one phase
(the primary one at inference)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.backbones import UNetDecoder, UNetEncoder
from mpliver.models.base import SegmentationModel
from mpliver.models.config import PV_ONLY, ModelConfig, config_error
from mpliver.models.registry import register_arch, register_model


@register_arch("liver_resunet")
class LiverResUNet(SegmentationModel):
    """Residual U-Net (ResUNet blocks in encoder and decoder). Takes the PV phase (N, 3, H, W) (the first
    tensor of the sequence; further phases are ignored) and returns `logits` (N, 2, H, W)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        self.encoder = UNetEncoder(cfg.in_channels, cfg.width, block="residual")
        channels = (self.encoder.stem_channels, *self.encoder.stage_channels)
        self.decoder = UNetDecoder(channels, block="residual")
        self.classifier = nn.Conv2d(channels[0], cfg.num_classes, 1)

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """A residual U-Net that reads the PV phase only."""
        if config.backbone != "unet":
            raise config_error(config, "liver_resunet is a residual U-Net: backbone must be 'unet'")
        if config.input_phases != 1:
            raise config_error(config, f"liver_resunet reads the PV phase only: fusion must be {PV_ONLY!r}")

    @property
    def encoders(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        (x,) = self.check_inputs(phases)
        return {"logits": self.classifier(self.decoder(self.encoder(x)))}


@register_model("liver_resunet")
def _liver_resunet() -> ModelConfig:
    # width 0.25 of the 64-channel U-Net base: 16..256 channels (2.1M parameters). The liver is an easy
    # target: this width is accurate enough on held-out phantom cases and makes stage 1 much cheaper than
    # width 0.5 (Dice and timings: benchmarks/RESULTS.md, "The liver stage").
    return ModelConfig(name="liver_resunet", arch="liver_resunet", fusion=PV_ONLY, num_phases=1,
                       backbone="unet", width=0.25, urim=False, feedback=False)
