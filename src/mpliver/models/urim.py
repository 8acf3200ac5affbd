"""URIM, the uncertain region inpainting module (paper §2.2, docs/method.md §3), and its LC-Conv.

Standalone: `URIM(channels)` takes decision features (B, C, h, w) and the initial logits (B, K, h, w) at the
same resolution and returns refined logits and the confidence map M (eq. 3). `LCConv` is eq. 4, computed as a
convolution over X * M divided by a box filter of M (no unfolding).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

S_MIN_FLOOR = 1e-6  # keeps S_max / S_min finite; M is then 1 - exp(1 - 1e6) = 1 for such pixels
DENOM_FLOOR = 1e-6  # box-sum of M over a window with no confident pixel


def confidence_map(logits: torch.Tensor) -> torch.Tensor:
    """M = 1 - exp(1 - S_max / S_min) (eq. 3) of softmax(logits) over classes: (B, 1, h, w) in [0, 1].

    Computed in float32 and detached: M steers the convolutions but is not trained through.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        s = torch.softmax(logits.detach().float(), dim=1)
        s_max = s.amax(dim=1, keepdim=True)
        s_min = s.amin(dim=1, keepdim=True).clamp_min(S_MIN_FLOOR)
        return 1.0 - torch.exp(1.0 - s_max / s_min)


def uncertainty_map(logits: torch.Tensor) -> torch.Tensor:
    """u = exp(1 - S_max / S_min) = 1 - M in [0, 1]: the uncertainty map users see (docs/method.md §3)."""
    return 1.0 - confidence_map(logits)


def uncertainty_from_probability(p: np.ndarray) -> np.ndarray:
    """The numpy twin of `uncertainty_map` for two classes, from the tumour probability p (S = (1 - p, p)):
    u = exp(1 - S_max / S_min), S_min floored as in `confidence_map`; float32, what `predict` writes."""
    p = np.asarray(p, dtype=np.float32)
    s_max = np.maximum(p, 1.0 - p)
    s_min = np.maximum(np.minimum(p, 1.0 - p), np.float32(S_MIN_FLOOR))
    with np.errstate(under="ignore", over="ignore"):
        return np.exp(1.0 - s_max / s_min).astype(np.float32)


def box_sum(m: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Sum of m over each k x k window, zero outside the image (an average pool times k^2)."""
    return F.avg_pool2d(m, kernel_size, stride=1, padding=kernel_size // 2,
                        count_include_pad=True) * (kernel_size * kernel_size)


def lc_denominator(m: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """max(box-sum(M), floor) in at least float32: eq. 4's per-pixel normaliser (one channel)."""
    m_acc = m.to(torch.promote_types(m.dtype, torch.float32))
    return box_sum(m_acc, kernel_size).clamp_min(DENOM_FLOOR)


def confidence_pyramid(m: torch.Tensor, num_layers: int, kernel_size: int = 3
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(M_i, box-sum(M_i)) for each LC-Conv layer i of a chain, M_{i+1} = max-pool3x3(M_i).

    None of this depends on the features, so URIM computes it once, before the feature convolutions.
    """
    levels = []
    for _ in range(num_layers):
        levels.append((m, lc_denominator(m, kernel_size)))
        m = F.max_pool2d(m, 3, stride=1, padding=1)  # the "max-value convolution"
    return levels


class LCConv(nn.Module):
    """Local-confidence convolution (eq. 4): y = conv(x * m) / box-sum(m) + b, then ReLU; m' = max-pool3x3(m).

    The denominator is the sum of M over the kernel window (one value per pixel, shared by all channels),
    clamped away from 0. Outside the image x and m count as 0 (zero padding), so borders are handled exactly.
    Division and bias run as one `addcdiv` pass, then an in-place ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 relu: bool = True):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.relu = relu

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, h, w); m: (B, 1, h, w) in [0, 1]. Returns (y, m_next)."""
        y = self.apply_with(x, m, lc_denominator(m, self.kernel_size))
        return y, F.max_pool2d(m, 3, stride=1, padding=1)  # the "max-value convolution"

    def apply_with(self, x: torch.Tensor, m: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
        """Eq. 4 with a precomputed `lc_denominator(m)` (see `confidence_pyramid`)."""
        num = self.conv(x * m.to(x.dtype))  # m is small (one channel): cast it, never the features
        y = torch.addcdiv(self.bias.to(num.dtype).view(1, -1, 1, 1), num, denom.to(num.dtype))
        return F.relu(y, inplace=True) if self.relu else y


class URIM(nn.Module):
    """`num_layers` LC-Convs over the decision features, guided by M; concat(refined, input) -> 1x1 conv."""

    def __init__(self, channels: int, num_classes: int = 2, num_layers: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(LCConv(channels) for _ in range(num_layers))
        self.classifier = nn.Conv2d(2 * channels, num_classes, 1)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (final_logits (B, K, h, w), confidence M (B, 1, h, w), float32)."""
        if features.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"URIM: features {tuple(features.shape)} and logits {tuple(logits.shape)} "
                             "must share the spatial size")
        confidence = confidence_map(logits)
        x = features
        # every mask level and LC-Conv denominator computed up front (the layers are all 3x3)
        levels = confidence_pyramid(confidence, len(self.layers), self.layers[0].kernel_size)
        for layer, (m, denom) in zip(self.layers, levels, strict=True):
            x = layer.apply_with(x, m, denom)
        return self.classifier(torch.cat([x, features], dim=1)), confidence
