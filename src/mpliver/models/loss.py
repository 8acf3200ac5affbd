"""The training loss (paper §2.3): L = CE(initial, y) + CE(final, y), equal weights.

Models without URIM: L = CE(logits, y).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def loss_terms(outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
               weight: torch.Tensor | None = None, ignore_index: int = -100) -> dict[str, torch.Tensor]:
    """Each cross-entropy term by name (`final`, and `initial` for URIM models), for logging.

    target: (N, H, W) integer class map. Logits are promoted to float32 (they are (N, K, H, W), small).
    """
    if target.dim() != 3 or target.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
        raise ValueError(f"target must be an (N, H, W) integer class map, got {tuple(target.shape)} "
                         f"{target.dtype}")
    target = target.long()
    terms = {"final": F.cross_entropy(outputs["logits"].float(), target, weight=weight,
                                      ignore_index=ignore_index)}
    if "initial" in outputs:
        terms["initial"] = F.cross_entropy(outputs["initial"].float(), target, weight=weight,
                                           ignore_index=ignore_index)
    return terms


def segmentation_loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                      weight: torch.Tensor | None = None, ignore_index: int = -100) -> torch.Tensor:
    """L_init + L_final for models with URIM, CE(logits, y) for every other model."""
    return sum(loss_terms(outputs, target, weight, ignore_index).values())
