"""What every fusion module shares: eq. 1 (weighted aggregation) and eq. 2 (modulated stream features)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_phase_features(features: Sequence[torch.Tensor], num_phases: int) -> None:
    """One feature map per phase, all of the same shape."""
    if len(features) != num_phases:
        raise ValueError(f"expected {num_phases} phase feature maps, got {len(features)}")
    shape = features[0].shape
    if any(f.shape != shape for f in features):
        raise ValueError(f"phase feature maps differ in shape: {[tuple(f.shape) for f in features]}")


def phase_softmax(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over the phase axis in the input's own dtype.

    Autocast would run softmax in float32 and make a float32 copy of a feature-sized tensor; over a handful
    of phases bf16 is accurate enough (the weights still sum to 1 within bf16 rounding).
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return torch.softmax(logits, dim=dim)


def aggregate(features: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | float]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """F_aggr = sum_p w_p * F_p (eq. 1) and F_p^(m) = (F_p + F_aggr) / 2 (eq. 2).

    `weights[p]` broadcasts against F_p (a float, a scalar tensor, (N, C, 1, 1) or (N, C, H, W)); a tensor
    is cast to the features' dtype so that bf16 features are not promoted to float32.
    """
    aggr = None
    for p, f in enumerate(features):
        w = weights[p]
        term = (w.to(f.dtype) if isinstance(w, torch.Tensor) else w) * f
        aggr = term if aggr is None else aggr + term
    modulated = [(f + aggr) * 0.5 for f in features]
    return aggr, modulated
