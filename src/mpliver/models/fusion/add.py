"""FLF-add: F_aggr = mean of the phase features, SAM with fixed equal weights (docs/method.md §3, `add`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.fusion.base import aggregate, check_phase_features


class AddFusion(nn.Module):
    """The paper sums PV and ART; the mean differs by a scale that the next BatchNorm absorbs."""

    def __init__(self, channels: int, num_phases: int = 2):
        super().__init__()
        self.channels, self.num_phases = channels, num_phases

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_phase_features(features, self.num_phases)
        return aggregate(features, [1.0 / self.num_phases] * self.num_phases)
