"""PA-ResSeg (comparison baseline, docs/method.md §3): ResNet-50 streams, phase attention at B2-B5, FPN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.backbones import make_encoder
from mpliver.models.base import SegmentationModel, upsample_to
from mpliver.models.config import ModelConfig
from mpliver.models.decoder import FPNDecoder
from mpliver.models.fusion import PAFusion
from mpliver.models.layers import scale_channels
from mpliver.models.network import PretrainedBackboneMixin


class PAResSeg(PretrainedBackboneMixin, SegmentationModel):
    """The phase-attention aggregates of B2-B5 are summed top-down in an FPN-style decoder; the streams run
    independently (no eq. 2 feedback), which is what sets it apart from the `pa` variant of our network."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        self.encoders = nn.ModuleList(make_encoder(cfg.backbone, cfg.in_channels, cfg.width, cfg.blocks)
                                      for _ in range(cfg.num_phases))
        stage_channels = self.encoders[0].stage_channels
        self.fusions = nn.ModuleList(PAFusion(c, cfg.num_phases) for c in stage_channels)
        self.decoder = FPNDecoder(stage_channels, scale_channels(cfg.decoder_channels, cfg.width),
                                  cfg.num_classes)

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = self.check_inputs(phases)
        per_phase = [enc(x) for enc, x in zip(self.encoders, xs, strict=True)]
        levels = [list(level) for level in zip(*per_phase, strict=True)]  # per level: one map per phase
        aggregated = [fusion(level)[0] for fusion, level in zip(self.fusions, levels, strict=True)]
        return {"logits": upsample_to(self.decoder(aggregated), xs[0].shape[-2:])}
