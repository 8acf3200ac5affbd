"""Encoders: ResNeXt-50 / ResNet-50 with torchvision names, and a 5-level U-Net encoder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mpliver.models.backbones.resnext import VARIANTS, ResNeXtEncoder
from mpliver.models.backbones.unet import UNetDecoder, UNetEncoder

BACKBONES = (*VARIANTS, "unet")


def make_encoder(backbone: str, in_channels: int = 3, width: float = 1.0,
                 blocks: Sequence[int] | None = None) -> nn.Module:
    """One stream's encoder; `blocks` applies to the ResNet backbones only."""
    if backbone == "unet":
        return UNetEncoder(in_channels, width)
    return ResNeXtEncoder(backbone, in_channels, width, blocks)


__all__ = ["BACKBONES", "ResNeXtEncoder", "UNetDecoder", "UNetEncoder", "make_encoder"]
