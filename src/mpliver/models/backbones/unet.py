"""U-Net encoder (5 levels) and decoder, with plain double-conv or residual (ResUNet) blocks.

Level 1 (B1) runs at full resolution; levels 2-5 (B2-B5) each halve the resolution (strides 2, 4, 8, 16) and
are where a fusion module (SAM, ...) sits in the multi-phase network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpliver.models.layers import ConvBNReLU, scale_channels

BASE_CHANNELS = (64, 128, 256, 512, 1024)


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU: the original U-Net block."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (1x1-projected) identity, then ReLU: the ResUNet block."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(in_channels, out_channels),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels))
        self.skip = (nn.Identity() if in_channels == out_channels else
                     nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


BLOCKS = {"double": DoubleConv, "residual": ResidualBlock}


class UNetEncoder(nn.Module):
    """Same interface as `ResNeXtEncoder`: `forward_stem` is level 1, `forward_stage(i)` level i + 2."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, block: str = "double"):
        super().__init__()
        make = BLOCKS[block]
        channels = [scale_channels(c, width) for c in BASE_CHANNELS]
        self.stem_channels = channels[0]
        self.stage_channels = tuple(channels[1:])
        self.stage_strides = (2, 4, 8, 16)
        self.stem = make(in_channels, channels[0])
        self.layers = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), make(channels[i], channels[i + 1])) for i in range(4))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.layers[index](x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All five levels, full resolution first."""
        feats = [self.forward_stem(x)]
        for i in range(4):
            feats.append(self.forward_stage(i, feats[-1]))
        return feats


class UNetDecoder(nn.Module):
    """U-Net expanding path: bilinear x2, concatenate the skip, block; ends at level 1 (full resolution)."""

    def __init__(self, channels: tuple[int, ...], block: str = "double"):
        super().__init__()
        make = BLOCKS[block]
        self.out_channels = channels[0]
        self.blocks = nn.ModuleList(
            make(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(len(channels) - 1)))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x
