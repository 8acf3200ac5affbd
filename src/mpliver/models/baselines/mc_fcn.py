"""MC-FCN (comparison baseline, docs/method.md §3): one FCN stream per phase, fused at the decision layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.backbones import make_encoder
from mpliver.models.base import PretrainedBackboneMixin, SegmentationModel, upsample_to
from mpliver.models.config import ModelConfig
from mpliver.models.layers import ConvBNReLU, scale_channels
from mpliver.models.registry import register_arch, register_model


@register_arch("mc_fcn")
class MCFCN(PretrainedBackboneMixin, SegmentationModel):
    """Per phase: encoder -> deepest level (B5) -> 3x3 conv-BN-ReLU (decision features, no skips).
    The phases' decision features are concatenated -> 1x1 classifier -> bilinear to the input size.

    The classifier runs before the upsampling: a 1x1 conv and bilinear interpolation are both linear and
    commute, so this equals "upsample, concatenate, classify" at a fraction of the memory.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        self.encoders = nn.ModuleList(make_encoder(cfg.backbone, cfg.in_channels, cfg.width, cfg.blocks)
                                      for _ in range(cfg.num_phases))
        deepest = self.encoders[0].stage_channels[-1]
        channels = scale_channels(cfg.decoder_channels, cfg.width)
        self.heads = nn.ModuleList(ConvBNReLU(deepest, channels) for _ in range(cfg.num_phases))
        self.classifier = nn.Conv2d(channels * cfg.num_phases, cfg.num_classes, 1)

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = self.check_inputs(phases)
        decision = [head(enc(x)[-1]) for enc, head, x in zip(self.encoders, self.heads, xs, strict=True)]
        return {"logits": upsample_to(self.classifier(torch.cat(decision, dim=1)), xs[0].shape[-2:])}


@register_model("mc_fcn")
def _mc_fcn() -> ModelConfig:
    return ModelConfig(name="mc_fcn", arch="mc_fcn", fusion="dlf", urim=False, feedback=False)
