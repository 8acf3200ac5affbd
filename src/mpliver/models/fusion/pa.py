"""PA (phase attention, in the style of PA-ResSeg): per-phase, per-channel weights from global context."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.fusion.base import aggregate, check_phase_features, phase_softmax


class PAFusion(nn.Module):
    """GAP of the concatenated phase features (B, N*C) -> MLP -> (B, N, C) -> softmax over phases."""

    def __init__(self, channels: int, num_phases: int = 2, reduction: int = 16):
        super().__init__()
        self.channels, self.num_phases = channels, num_phases
        total = channels * num_phases
        hidden = max(8, total // reduction)
        self.mlp = nn.Sequential(nn.Linear(total, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, total))

    def weights(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, N, C, 1, 1), summing to 1 over N."""
        check_phase_features(features, self.num_phases)
        context = torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1)
        w0 = self.mlp(context).reshape(-1, self.num_phases, self.channels, 1, 1)
        return phase_softmax(w0, dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return aggregate(features, self.weights(features).unbind(dim=1))
