"""SAM, the spatial aggregation module (paper §2.1, SPEC §3): per-element softmax weights over phases.

Standalone: `SAM(channels, num_phases)` maps N phase feature maps (each (B, C, H, W)) to the aggregate
F_aggr = sum_p w_p * F_p (eq. 1) and the modulated stream features (F_p + F_aggr) / 2 (eq. 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpliver.models.fusion.base import aggregate, check_phase_features, phase_softmax
from mpliver.models.layers import ConvBNReLU


class SAM(nn.Module):
    """Spatial aggregation of `num_phases` >= 2 feature maps with `channels` channels.

    Descriptors: channel-wise mean and max of each phase, concatenated (2N x H x W). For each phase p a
    mapping M(p) over these descriptors has four `branch_channels`-channel conv-BN-ReLU branches (7x7
    followed by global average pooling, broadcast back to H x W; 7x7; 3x3; 5x5); their concatenation goes
    through a 3x3 conv to w0_p (C channels). w = softmax over phases of w0, element by element.

    The N mappings all read the same descriptors, so each branch is one conv with N * 16 outputs (rows
    [16p, 16p + 16) belong to phase p) and the final 3x3 convs are one grouped conv with N groups: the same
    maths as N separate mappings, in four kernel launches instead of 4N.
    """

    def __init__(self, channels: int, num_phases: int = 2, branch_channels: int = 16):
        super().__init__()
        if num_phases < 2:
            raise ValueError(f"SAM fuses at least 2 phases, got num_phases={num_phases}")
        self.channels, self.num_phases, self.branch_channels = channels, num_phases, branch_channels
        descriptors, out = 2 * num_phases, branch_channels * num_phases
        self.branch_global = ConvBNReLU(descriptors, out, 7)  # followed by GAP
        self.branch7 = ConvBNReLU(descriptors, out, 7)
        self.branch3 = ConvBNReLU(descriptors, out, 3)
        self.branch5 = ConvBNReLU(descriptors, out, 5)
        self.project = nn.Conv2d(4 * out, channels * num_phases, 3, padding=1, groups=num_phases)

    @staticmethod
    def descriptors(features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 2N, H, W): [mean_c F_1, max_c F_1, mean_c F_2, max_c F_2, ...]."""
        parts = []
        for f in features:
            parts += [f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)]
        return torch.cat(parts, dim=1)

    def response_maps(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """w: (B, N, C, H, W), summing to 1 over N at every (b, c, h, w)."""
        check_phase_features(features, self.num_phases)
        d = self.descriptors(features)
        b, _, h, w = d.shape
        n, k = self.num_phases, self.branch_channels
        glob = self.branch_global(d).mean(dim=(2, 3), keepdim=True).expand(-1, -1, h, w)
        branches = [glob, self.branch7(d), self.branch3(d), self.branch5(d)]
        # phase-major order (phase, branch, channel) so that group p of `project` sees only M(p)'s outputs
        stacked = torch.stack([x.reshape(b, n, k, h, w) for x in branches], dim=2).reshape(b, 4 * n * k, h, w)
        w0 = self.project(stacked).reshape(b, n, self.channels, h, w)
        return phase_softmax(w0, dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(F_aggr, [(F_p + F_aggr) / 2 for each phase])."""
        w = self.response_maps(features)
        return aggregate(features, w.unbind(dim=1))
