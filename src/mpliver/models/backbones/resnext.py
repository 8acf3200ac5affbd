"""ResNeXt-50 (32x4d) / ResNet-50 encoder with torchvision's parameter names.

The attribute names (`conv1`, `bn1`, `layer1..4`, `downsample.0/1`, Bottleneck `conv1..3`/`bn1..3`) are the
checkpoint format: an ImageNet state dict of torchvision's `resnext50_32x4d` or `resnet50` loads as is
(minus `fc.*`, which an encoder has no use for). The stem (B1) and the four stages (B2-B5) are exposed
separately so that a fusion module can sit between stages. A width multiplier and fewer blocks per stage
make CPU-sized variants; at width 1 with the default blocks the model is torchvision's exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.layers import scale_channels

DEFAULT_BLOCKS = (3, 4, 6, 3)
# (groups, width_per_group) as in torchvision: ResNeXt-50 32x4d and ResNet-50.
VARIANTS = {"resnext50": (32, 4), "resnet50": (1, 64)}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv, "ResNet v1.5")."""

    expansion = 4
    # forward applies bnN directly to convN's output: `models.inference.fuse_conv_bn` may fold them
    CONV_BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, width_per_group: int,
                 downsample: nn.Module | None):
        super().__init__()
        # torchvision: int(planes * width_per_group / 64) * groups; multiplied first so narrow widths stay > 0
        inner = int(planes * width_per_group * groups / 64)
        groups = math.gcd(groups, inner)  # narrow widths: keep the grouping valid
        self.conv1 = nn.Conv2d(inplanes, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXtEncoder(nn.Module):
    """B1 = conv 7x7/2, BN, ReLU, max-pool 3x3/2 (stride 4); B2-B5 = layer1..layer4 (strides 4, 8, 16, 32)."""

    CONV_BN_PAIRS = (("conv1", "bn1"),)  # the stem: bn1(conv1(x)), see Bottleneck

    def __init__(self, variant: str = "resnext50", in_channels: int = 3, width: float = 1.0,
                 blocks: Sequence[int] | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ResNet variant {variant!r}; valid: {sorted(VARIANTS)}")
        blocks = tuple(DEFAULT_BLOCKS if blocks is None else blocks)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be 4 positive block counts per stage, got {blocks}")
        groups, width_per_group = VARIANTS[variant]
        self.variant, self.width, self.blocks = variant, width, blocks
        self.inplanes = scale_channels(64, width)
        self.stem_channels = self.inplanes
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            layer = self._make_layer(scale_channels(planes, width), n, 1 if i == 0 else 2, groups,
                                     width_per_group)
            self.add_module(f"layer{i + 1}", layer)
            channels.append(self.inplanes)
        self.stage_channels = tuple(channels)
        self.stage_strides = (4, 8, 16, 32)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, n: int, stride: int, groups: int,
                    width_per_group: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out))
        layers = [Bottleneck(self.inplanes, planes, stride, groups, width_per_group, downsample)]
        self.inplanes = out
        layers += [Bottleneck(out, planes, 1, groups, width_per_group, None) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """B1."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """B(index + 2), index 0..3 (layer1..layer4)."""
        return getattr(self, f"layer{index + 1}")(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B2-B5 features of one stream (no fusion)."""
        x = self.forward_stem(x)
        feats = []
        for i in range(4):
            x = self.forward_stage(i, x)
            feats.append(x)
        return feats
