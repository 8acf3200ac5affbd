"""Small building blocks shared by the encoders, fusions and decoders."""

from __future__ import annotations

from torch import nn


def scale_channels(channels: int, width: float, divisor: int = 8, minimum: int = 8) -> int:
    """Channel count `channels * width`, rounded to a multiple of `divisor` (exact at width 1)."""
    if width == 1.0:
        return channels
    return max(minimum, int(channels * width / divisor + 0.5) * divisor)


class ConvBNReLU(nn.Sequential):
    """k x k convolution (same padding, no bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
