"""`nnunet2d`: a plain 2D U-Net in nnU-Net's usual 2D configuration for a 512x512 CT task (speed reference).

What nnU-Net v2 plans for such a task (`PlainConvUNet`): 8 stages with 32, 64, 128, 256, 512, 512, 512, 512
features; two 3x3 conv (with bias) -> InstanceNorm (affine) -> LeakyReLU(0.01) per stage; the first conv of
stages 2-8 has stride 2 (strided-conv downsampling); the decoder upsamples with 2x2 transposed convs,
concatenates the skip and runs two convs; a 1x1 head gives the logits. Input: the centre slice of each phase
as one channel (2 channels for PV + ART), i.e. input-level fusion.

Deviations, on purpose: no deep supervision (one full-resolution output, so every parameter gets a gradient
and the loss is the same as every other model's); inputs smaller than nnU-Net's geometry needs are padded.
Seven stride-2 stages need a multiple of 128 px, and InstanceNorm in training needs more than one pixel at the
bottleneck, so the model zero-pads each side to a multiple of 128 that is at least 256 and crops the logits
back. At 512x512 (the size it is meant for) nothing is padded and the bottleneck is 4x4, as in nnU-Net.

`nnunet2d_native` is the same model built from nnU-Net's own `PlainConvUNet` (dynamic_network_architectures,
deep supervision off, its unused heads dropped); it needs the nnU-Net extra (mpliver.extras). The two are
separate model names, not a switch on what is importable, so a checkpoint names the network it holds and
loads the same way on every machine. `NNUNet2D.implementation` says which one was built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mpliver.extras import require_nnunet
from mpliver.models.base import SegmentationModel
from mpliver.models.config import ModelConfig, config_error
from mpliver.models.layers import scale_channels
from mpliver.models.registry import register_arch, register_model

try:  # optional extra, at module top: the real architecture where the nnU-Net extra is installed
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
except ImportError:  # the look-alike below stands in
    PlainConvUNet = None

FEATURES = (32, 64, 128, 256, 512, 512, 512, 512)
PAD_MULTIPLE = 2 ** (len(FEATURES) - 1)  # 128: seven stride-2 stages
MIN_SIZE = 2 * PAD_MULTIPLE  # bottleneck of at least 2x2 px
NATIVE = "nnunet2d_native"  # the model name that builds nnU-Net's own network


class ConvINLReLU(nn.Sequential):
    """3x3 conv (bias) -> InstanceNorm (affine) -> LeakyReLU(0.01): nnU-Net's conv block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.InstanceNorm2d(out_channels, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class PlainConvEncoder(nn.Module):
    """The 8 stages; returns every stage's output (the skips), finest first."""

    def __init__(self, in_channels: int, features: Sequence[int]):
        super().__init__()
        stages, prev = [], in_channels
        for i, c in enumerate(features):
            stages.append(nn.Sequential(ConvINLReLU(prev, c, stride=1 if i == 0 else 2), ConvINLReLU(c, c)))
            prev = c
        self.stages = nn.ModuleList(stages)
        self.features = tuple(features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class PlainConvDecoder(nn.Module):
    """Per level, coarse to fine: 2x2 transposed conv -> concat skip -> two conv blocks."""

    def __init__(self, features: Sequence[int]):
        super().__init__()
        self.up = nn.ModuleList(nn.ConvTranspose2d(features[i + 1], features[i], 2, stride=2)
                                for i in reversed(range(len(features) - 1)))
        self.blocks = nn.ModuleList(nn.Sequential(ConvINLReLU(2 * features[i], features[i]),
                                                  ConvINLReLU(features[i], features[i]))
                                    for i in reversed(range(len(features) - 1)))

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for up, block, skip in zip(self.up, self.blocks, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return x


@register_arch("nnunet2d")
class NNUNet2D(SegmentationModel):
    """nnU-Net-style 2D U-Net over the phases' centre slices. `width` scales the features (tiny tests)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        features = tuple(scale_channels(c, cfg.width) for c in FEATURES)
        self.native = cfg.name == NATIVE
        if self.native:
            require_nnunet(f"model {NATIVE}")
            self.implementation = "dynamic_network_architectures.PlainConvUNet"
            self.net = PlainConvUNet(
                cfg.num_phases, len(features), features, nn.Conv2d, 3, [1] + [2] * (len(features) - 1), 2,
                cfg.num_classes, 2, conv_bias=True, norm_op=nn.InstanceNorm2d,
                norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                nonlin_kwargs={"inplace": True}, deep_supervision=False)
            # nnU-Net keeps a 1x1 head per decoder stage (deep supervision), and without deep supervision
            # uses the last only: the others are dropped so that every parameter gets a gradient (DDP)
            heads = self.net.decoder.seg_layers
            for i in range(len(heads) - 1):
                heads[i] = nn.Identity()
            return
        self.implementation = "mpliver look-alike"
        self.encoder = PlainConvEncoder(cfg.num_phases, features)
        self.decoder = PlainConvDecoder(features)
        self.classifier = nn.Conv2d(features[0], cfg.num_classes, 1)

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """A plain U-Net over the phases as input channels."""
        if config.backbone != "unet" or config.fusion != "ilf":
            raise config_error(config, "nnunet2d is a plain U-Net over the phases as channels: "
                                       "backbone 'unet', fusion 'ilf'")

    @property
    def encoders(self) -> list[nn.Module]:
        return [self.net.encoder if self.native else self.encoder]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return self.net(x)
        return self.classifier(self.decoder(self.encoder(x)))

    def centre_slices(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, num_phases, H, W): channel in_channels // 2 (the centre of the slice stack) of each phase."""
        c = self.config.in_channels // 2
        return torch.cat([x[:, c:c + 1] for x in xs], dim=1)

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.centre_slices(self.check_inputs(phases))
        h, w = x.shape[-2:]
        ph, pw = (max(MIN_SIZE, -(-s // PAD_MULTIPLE) * PAD_MULTIPLE) - s for s in (h, w))
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        logits = self._logits(x)
        if ph or pw:
            logits = logits[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
        return {"logits": logits}


@register_model("nnunet2d")
def _nnunet2d() -> ModelConfig:
    # phases enter as input channels (input-level fusion), hence fusion "ilf" and one stream
    return ModelConfig(name="nnunet2d", arch="nnunet2d", fusion="ilf", backbone="unet", urim=False,
                       feedback=False)


@register_model(NATIVE)
def _nnunet2d_native() -> ModelConfig:
    # the same model built from nnU-Net's own PlainConvUNet (needs the nnU-Net extra)
    return ModelConfig(name=NATIVE, arch="nnunet2d", fusion="ilf", backbone="unet", urim=False,
                       feedback=False)
