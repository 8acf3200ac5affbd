"""Encoders: torchvision's parameter names and shapes, strides, width multiplier, U-Net levels."""

from __future__ import annotations

import json

import pytest
import torch

from mpliver.models.backbones import ResNeXtEncoder, UNetDecoder, UNetEncoder

TORCHVISION = {"resnext50": "resnext50_32x4d", "resnet50": "resnet50"}


@pytest.mark.parametrize("variant", ["resnext50", "resnet50"])
def test_full_width_state_dict_is_torchvisions(shared_data, variant):
    table = json.loads((shared_data / "backbone" / "torchvision_backbone_keys.json").read_text())
    expected = {k: list(v) for k, v in table[TORCHVISION[variant]].items() if not k.startswith("fc.")}
    got = {k: list(v.shape) for k, v in ResNeXtEncoder(variant).state_dict().items()}
    assert got == expected


def test_stem_and_stage_shapes_and_strides():
    enc = ResNeXtEncoder("resnext50", width=0.25, blocks=(1, 1, 2, 1))
    x = torch.rand(1, 3, 64, 96)
    h = enc.forward_stem(x)
    assert h.shape == (1, 16, 16, 24)  # B1: stride 4
    for i, (c, s) in enumerate(zip(enc.stage_channels, enc.stage_strides, strict=True)):
        h = enc.forward_stage(i, h)
        assert h.shape == (1, c, 64 // s, 96 // s)
    assert enc.stage_channels == (64, 128, 256, 512)
    assert len(enc.layer3) == 2
    # torchvision's v1.5 bottleneck: the stride sits on the grouped 3x3 conv
    assert enc.layer2[0].conv2.stride == (2, 2) and enc.layer2[0].conv1.stride == (1, 1)
    assert enc.layer2[0].conv2.groups == 32


def test_narrow_widths_keep_valid_groups():
    enc = ResNeXtEncoder("resnext50", width=0.125, blocks=(1, 1, 1, 1))
    assert enc.layer1[0].conv2.groups == 16  # 16 inner channels: 32 groups would not divide them
    feats = enc(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == list(enc.stage_channels)
    with pytest.raises(ValueError, match="4 positive"):
        ResNeXtEncoder(blocks=(1, 1))


def test_unet_encoder_and_decoder():
    enc = UNetEncoder(3, width=0.25)
    feats = enc(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 64, 64), (32, 32, 32), (64, 16, 16), (128, 8, 8),
                                                     (256, 4, 4)]
    dec = UNetDecoder((enc.stem_channels, *enc.stage_channels))
    assert dec(feats).shape == (2, 16, 64, 64)
    res = UNetEncoder(3, width=0.25, block="residual")
    assert res(torch.rand(1, 3, 32, 32))[-1].shape == (1, 256, 2, 2)
