"""PA-ResSeg (comparison baseline, docs/method.md §3): ResNet-50 streams, phase attention at B2-B5, FPN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mpliver.models.backbones import make_encoder
from mpliver.models.base import PretrainedBackboneMixin, SegmentationModel, upsample_to
from mpliver.models.config import ModelConfig
from mpliver.models.fusion import PAFusion
from mpliver.models.layers import ConvBNReLU, scale_channels
from mpliver.models.registry import register_arch, register_model


class FPNDecoder(nn.Module):
    """FPN-style decoder (for `pa_resseg`): lateral 1x1 convs, top-down upsample-and-sum, 3x3 conv-BN-ReLU,
    1x1 classifier at the finest level."""

    def __init__(self, in_channels: Sequence[int], channels: int = 128, num_classes: int = 2):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = ConvBNReLU(channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1]), strict=True):
            x = lateral(f) + F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.smooth(x))


@register_arch("pa_resseg")
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


@register_model("pa_resseg")
def _pa_resseg() -> ModelConfig:
    return ModelConfig(name="pa_resseg", arch="pa_resseg", fusion="pa", backbone="resnet50", urim=False,
                       feedback=False)
