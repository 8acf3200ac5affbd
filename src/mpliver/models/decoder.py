"""The paper's decoder (docs/method.md §3): four aggregated levels -> decision features -> initial logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mpliver.models.layers import ConvBNReLU


class FusionDecoder(nn.Module):
    """Each level: 1x1 conv to D channels, bilinear up to the finest level's size; concatenate; two 3x3
    conv-BN-ReLU give the D-channel "decision features" at the finest level's resolution.

    The 1x1 classifier to the initial logits belongs to the head (the network), so that `dlf` can concatenate
    the decision features of two decoders before classifying them.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 128):
        super().__init__()
        self.channels = channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(ConvBNReLU(len(in_channels) * channels, channels),
                                  ConvBNReLU(channels, channels))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decision features (B, D, h, w) at the resolution of feats[0]."""
        size = feats[0].shape[-2:]
        ups = []
        for lateral, f in zip(self.lateral, feats, strict=True):
            x = lateral(f)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            ups.append(x)
        return self.fuse(torch.cat(ups, dim=1))

