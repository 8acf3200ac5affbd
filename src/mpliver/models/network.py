"""The configurable multi-phase network (docs/method.md §3): one encoder stream per phase, fusion after
B2-B5 with eq. 2 feedback, the paper's decoder and an optional URIM head. Every fusion variant is a
configuration of it, registered here under its name (`paper`, `sam`, `add`, `mw`, `pa`, `ilf`, `dlf`,
`single_phase`).

"Every feature-level variant keeps eq. 2 feedback and URIM unless told otherwise" (docs/method.md §3), so the
fusion table compares rows that differ only in the aggregation; the ablation rows are `single_phase`, `add`
and `sam` with `urim=False`, and `paper`. `sam` and `paper` build the same network and differ only in name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mpliver.models.backbones import make_encoder
from mpliver.models.base import PretrainedBackboneMixin, SegmentationModel, upsample_to
from mpliver.models.config import ModelConfig
from mpliver.models.decoder import FusionDecoder
from mpliver.models.fusion import FUSIONS, make_fusion
from mpliver.models.layers import scale_channels
from mpliver.models.registry import register_arch, register_model
from mpliver.models.urim import URIM


@register_arch("multiphase")
class MultiPhaseNet(PretrainedBackboneMixin, SegmentationModel):
    """Streams -> [fusion at B2-B5, eq. 2 feedback] -> FusionDecoder -> 1x1 classifier -> [URIM].

    fusion: `sam` | `add` | `mw` | `pa` (feature-level, one module per level); `ilf` (phases concatenated at
    the input, one stream); `dlf` (independent streams, one decoder each, decision features concatenated);
    `single` (PV only, one stream).
    """

    supports_urim = True
    supports_shared_encoder = True

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        kind = cfg.fusion
        n_encoders = 1 if cfg.num_streams == 1 or cfg.shared_encoder else cfg.num_phases
        in_channels = cfg.in_channels * (cfg.num_phases if kind == "ilf" else 1)
        self.encoders = nn.ModuleList(make_encoder(cfg.backbone, in_channels, cfg.width, cfg.blocks)
                                      for _ in range(n_encoders))
        stage_channels = self.encoders[0].stage_channels
        self.fusions = (nn.ModuleList(make_fusion(kind, c, cfg.num_phases) for c in stage_channels)
                        if kind in FUSIONS else None)
        channels = scale_channels(cfg.decoder_channels, cfg.width)
        n_decoders = cfg.num_phases if kind == "dlf" else 1
        self.decoders = nn.ModuleList(FusionDecoder(stage_channels, channels) for _ in range(n_decoders))
        decision_channels = channels * n_decoders
        self.classifier = nn.Conv2d(decision_channels, cfg.num_classes, 1)
        self.urim = URIM(decision_channels, cfg.num_classes, cfg.urim_layers) if cfg.urim else None

    def _stream_inputs(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.config.fusion == "ilf":
            return [torch.cat(xs, dim=1)]
        return xs

    def encode(self, xs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per decoder: its four input levels (aggregated features, or one stream's own features)."""
        inputs = self._stream_inputs(xs)
        encoders = [self.encoders[min(i, len(self.encoders) - 1)] for i in range(len(inputs))]
        h = [enc.forward_stem(x) for enc, x in zip(encoders, inputs, strict=True)]
        per_stream: list[list[torch.Tensor]] = [[] for _ in h]
        aggregated: list[torch.Tensor] = []
        for level in range(4):
            h = [enc.forward_stage(level, x) for enc, x in zip(encoders, h, strict=True)]
            if self.fusions is None:
                for feats, f in zip(per_stream, h, strict=True):
                    feats.append(f)
                continue
            aggr, modulated = self.fusions[level](h)
            aggregated.append(aggr)
            if self.config.feedback:
                h = modulated
        return [aggregated] if self.fusions is not None else per_stream

    def forward(self, phases: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = self.check_inputs(phases)
        size = xs[0].shape[-2:]
        levels = self.encode(xs)
        decision = torch.cat([dec(feats) for dec, feats in zip(self.decoders, levels, strict=True)], dim=1)
        initial = self.classifier(decision)
        if self.urim is None:
            return {"logits": upsample_to(initial, size)}
        final, confidence = self.urim(decision, initial)
        return {"logits": upsample_to(final, size), "initial": upsample_to(initial, size),
                "confidence": confidence}


def _multiphase(name: str, fusion: str, **kw: Any) -> ModelConfig:
    return ModelConfig(name=name, arch="multiphase", fusion=fusion, **kw)


@register_model("paper")
def _paper() -> ModelConfig:
    return _multiphase("paper", "sam", urim=True)


@register_model("sam")
def _sam() -> ModelConfig:
    return _multiphase("sam", "sam")


@register_model("add")
def _add() -> ModelConfig:
    return _multiphase("add", "add")


@register_model("mw")
def _mw() -> ModelConfig:
    return _multiphase("mw", "mw")


@register_model("pa")
def _pa() -> ModelConfig:
    return _multiphase("pa", "pa")


@register_model("ilf")
def _ilf() -> ModelConfig:
    return _multiphase("ilf", "ilf")


@register_model("dlf")
def _dlf() -> ModelConfig:
    return _multiphase("dlf", "dlf")


@register_model("single_phase")
def _single_phase() -> ModelConfig:
    return _multiphase("single_phase", "single", num_phases=1)
