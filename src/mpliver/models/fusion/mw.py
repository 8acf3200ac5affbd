"""MW (modality weighting, as in MW-UNet): one trainable scalar per phase, softmax-normalised over phases."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.fusion.base import aggregate, check_phase_features


class MWFusion(nn.Module):
    """w = softmax(theta) over phases, theta initialised to 0 (equal weights)."""

    def __init__(self, channels: int, num_phases: int = 2):
        super().__init__()
        self.channels, self.num_phases = channels, num_phases
        self.logits = nn.Parameter(torch.zeros(num_phases))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits.float(), dim=0)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_phase_features(features, self.num_phases)
        return aggregate(features, self.weights().unbind(0))
