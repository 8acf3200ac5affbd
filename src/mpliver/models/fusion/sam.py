"""SAM, the spatial aggregation module (paper §2.1, docs/method.md §3): per-element softmax over phases.

Standalone: `SAM(channels, num_phases)` maps N phase feature maps (each (B, C, H, W)) to the aggregate
F_aggr = sum_p w_p * F_p (eq. 1) and the modulated stream features (F_p + F_aggr) / 2 (eq. 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
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

    Two phases (the usual case) take a cheaper, equal route: softmax over two logits is sigmoid(w0_1 - w0_2),
    and the difference of the two groups of `project` (which read disjoint inputs) is one dense conv with
    weights [W_1, -W_2] and bias b_1 - b_2. That gives C output channels instead of 2C, no grouped conv (slow
    in oneDNN's backward), no stacked (B, 2, C, H, W) weights, and eqs. 1-2 become
    F_aggr = F_2 + w_1 (F_1 - F_2) and (F_p + F_aggr) / 2 = lerp(F_p, F_aggr, 1/2): three fused passes.
    The parameters (and so checkpoints) are those of the grouped layout.
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
        return _maybe_fused(channel_descriptors, features[0])(list(features))

    def mapping_outputs(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The four branches of every M(p), phase-major (B, 4 * N * 16, H, W): the input of `project`."""
        check_phase_features(features, self.num_phases)
        d = self.descriptors(features)
        b, _, h, w = d.shape
        n, k = self.num_phases, self.branch_channels
        glob = self.branch_global(d).mean(dim=(2, 3), keepdim=True).expand(-1, -1, h, w)
        branches = [glob, self.branch7(d), self.branch3(d), self.branch5(d)]
        # phase-major order (phase, branch, channel) so that group p of `project` sees only M(p)'s outputs
        return torch.stack([x.reshape(b, n, k, h, w) for x in branches], dim=2).reshape(b, 4 * n * k, h, w)

    def difference_weights(self, device_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        """[W_1, -W_2] (C, 2 * 4 * 16, 3, 3) and b_1 - b_2 of the two groups of `project` (two phases), cast
        to the autocast dtype first when autocast is on, so that no float32 copy of the features is made."""
        c = self.channels
        weight, bias = self.project.weight, self.project.bias
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            weight, bias = weight.to(dtype), bias.to(dtype)
        return torch.cat([weight[:c], -weight[c:]], dim=1), bias[:c] - bias[c:]

    def logit_difference(self, mapped: torch.Tensor) -> torch.Tensor:
        """w0_1 - w0_2 (B, C, H, W) for two phases from `mapping_outputs`, as one dense conv."""
        weight, bias = self.difference_weights(mapped.device.type)
        return F.conv2d(mapped, weight, bias, padding=1)

    def two_phase_logits(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """w0_1 - w0_2 for two phases without building `mapping_outputs`: equal to
        `logit_difference(mapping_outputs(features))` (tests/models/test_fusion.py), cheaper.

        The global branch is constant over H x W, so its share of the 3x3 projection is a per-sample constant
        except on the border rows and columns, where zero padding drops kernel taps. It is computed on a
        3 x 3 constant map and added to the projection of the three spatial branches: a quarter fewer
        projection multiply-adds and no broadcast global map in the stacked input.
        """
        check_phase_features(features, 2)
        d = self.descriptors(features)
        b, _, h, w = d.shape
        n, k, c = 2, self.branch_channels, self.channels
        weight, bias = self.difference_weights(d.device.type)
        per_branch = weight.view(c, n, 4, k, *weight.shape[-2:])  # input order (phase, branch, channel)
        local = [self.branch7(d), self.branch3(d), self.branch5(d)]
        stacked = torch.stack([x.reshape(b, n, k, h, w) for x in local], dim=2).reshape(b, 3 * n * k, h, w)
        z = F.conv2d(stacked, per_branch[:, :, 1:].reshape(c, 3 * n * k, 3, 3), bias, padding=1)
        glob = self.branch_global(d).mean(dim=(2, 3))  # (B, N * 16)
        return add_constant_conv(z, glob, per_branch[:, :, 0].reshape(c, n * k, 3, 3))

    def response_maps(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """w: (B, N, C, H, W), summing to 1 over N at every (b, c, h, w)."""
        if self.num_phases == 2:
            z = self.two_phase_logits(features)
            with torch.autocast(device_type=z.device.type, enabled=False):
                return torch.stack([torch.sigmoid(z), torch.sigmoid(-z)], dim=1)
        mapped = self.mapping_outputs(features)
        b, _, h, w = mapped.shape
        w0 = self.project(mapped).reshape(b, self.num_phases, self.channels, h, w)
        return phase_softmax(w0, dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(F_aggr, [(F_p + F_aggr) / 2 for each phase])."""
        if self.num_phases != 2:
            return aggregate(features, self.response_maps(features).unbind(dim=1))
        z = self.two_phase_logits(features)
        return _maybe_fused(blend_two, z)(features[0], features[1], z)


def _spread(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Entries [first, middle, last] of `t` along `dim` (size 3, or n when n < 3) stretched to length n:
    first, n - 2 copies of the middle, last (no index tensors, so no host-to-device copies)."""
    if n < 3:
        return t
    parts = t.split(1, dim=dim)
    middle = parts[1].expand(*[n - 2 if d == dim % t.dim() else -1 for d in range(t.dim())])
    return torch.cat([parts[0], middle, parts[2]], dim=dim)


def add_constant_conv(z: torch.Tensor, values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """z + conv2d(map, weight, padding=1) where `map` (B, K, H, W) holds `values` (B, K) at every pixel,
    exactly (zero padding included) and without making the map: that convolution is one vector per sample
    inside, and differs only on the border rows and columns, all read off a convolution over a 3 x 3
    constant map."""
    b, _, h, w = z.shape
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"add_constant_conv takes a 3x3 kernel, got {tuple(weight.shape[-2:])}")
    hh, ww = min(h, 3), min(w, 3)
    small = F.conv2d(values[:, :, None, None].expand(-1, -1, hh, ww), weight, padding=1)  # (B, C, hh, ww)
    small = small.to(z.dtype)

    if h < 3 or w < 3:  # tiny maps (deep levels of small inputs): materialise, it is small anyway
        return z + _spread(_spread(small, 2, h), 3, w)
    inner = small[:, :, 1:2, 1:2]
    delta = small - inner
    z = z.add_(inner)  # in place: a convolution's backward does not need its output
    z[:, :, 0, :] += _spread(delta[:, :, 0], 2, w)
    z[:, :, -1, :] += _spread(delta[:, :, 2], 2, w)
    z[:, :, 1:-1, 0] += delta[:, :, 1, 0:1]
    z[:, :, 1:-1, -1] += delta[:, :, 1, 2:3]
    return z


def channel_descriptors(features: list[torch.Tensor]) -> torch.Tensor:
    """Channel-wise mean and max of every phase, concatenated (see `SAM.descriptors`)."""
    parts = []
    for f in features:
        parts += [f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)]
    return torch.cat(parts, dim=1)


# ---- optional fused kernels ------------------------------------------------------------------------------
# SAM's elementwise work (channel statistics; sigmoid and eqs. 1-2) is a chain of memory-bound passes over
# feature-sized tensors. `set_fused_sam("cuda")` runs those two functions through torch.compile (inductor),
# which makes each one fused kernel forward and one backward while the rest of the network stays eager: the
# same maths (tests/models/test_fusion.py checks it against the eager functions). "off" (the default) keeps
# everything eager, "always" also fuses on the CPU (needs a C compiler; used by the tests).
_FUSED_MODES = ("off", "cuda", "always")
_fused_mode = "off"
_compiled: dict[Callable, Callable] = {}


def set_fused_sam(mode: str) -> None:
    """Where SAM's elementwise chains run as compiled fused kernels: 'off', 'cuda' or 'always'."""
    global _fused_mode
    if mode not in _FUSED_MODES:
        raise ValueError(f"fused SAM mode must be one of {_FUSED_MODES}, got {mode!r}")
    _fused_mode = mode


def fused_sam_mode() -> str:
    """The current `set_fused_sam` mode."""
    return _fused_mode


def _maybe_fused(fn: Callable, probe: torch.Tensor) -> Callable:
    if _fused_mode == "off" or (_fused_mode == "cuda" and probe.device.type != "cuda"):
        return fn
    if torch.compiler.is_compiling():  # inside a whole-model torch.compile: let it fuse
        return fn
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _compiled[fn]


def blend_two(f1: torch.Tensor, f2: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eqs. 1-2 for two phases with w_1 = sigmoid(z), w_2 = 1 - w_1, in the features' dtype (no autocast
    float32 copies): F_aggr = F_2 + w_1 (F_1 - F_2); modulated F_p = lerp(F_p, F_aggr, 1/2)."""
    with torch.autocast(device_type=f1.device.type, enabled=False):
        w1 = torch.sigmoid(z.to(f1.dtype))
        aggr = torch.addcmul(f2, w1, f1 - f2)
        return aggr, [torch.lerp(f1, aggr, 0.5), torch.lerp(f2, aggr, 0.5)]
