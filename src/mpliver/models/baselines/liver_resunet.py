"""The stage-1 liver model (docs/method.md §4.3): a small residual U-Net on the 3-slice PV stack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.backbones import UNetDecoder, UNetEncoder
from mpliver.models.base import SegmentationModel
from mpliver.models.config import ModelConfig


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

    @property
    def encoders(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        (x,) = self.check_inputs(phases)
        return {"logits": self.classifier(self.decoder(self.encoder(x)))}
