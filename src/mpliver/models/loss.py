"""The training loss (paper §2.3): L = CE(initial, y) + CE(final, y), equal weights.

Models without URIM: L = CE(logits, y). `dice_ce_loss` adds a soft Dice term to every CE term, as nnU-Net
trains (MONAI's DiceLoss: the foreground class, Dice over the whole batch). Target pixels equal to -100
(`mpliver.io.labels.IGNORE_INDEX`, torch's `ignore_index`) count in no term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from mpliver.io.labels import IGNORE_INDEX


def loss_terms(outputs: Mapping[str, torch.Tensor], target: torch.Tensor, weight: torch.Tensor | None = None,
               ignore_index: int = IGNORE_INDEX) -> dict[str, torch.Tensor]:
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
                      weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """L_init + L_final for models with URIM, CE(logits, y) for every other model."""
    return sum(loss_terms(outputs, target, weight, ignore_index).values())


def dice_ce_loss(weight: torch.Tensor | None = None) -> Callable[[Mapping[str, torch.Tensor], torch.Tensor],
                                                                 torch.Tensor]:
    """L = sum over terms of CE(term, y) + soft Dice(term, y): nnU-Net's loss, in place of the paper's CE.

    The Dice is MONAI's `DiceLoss` on the softmax, foreground classes only, pooled over the batch (a batch
    without tumour pixels still has a defined Dice through the smoothing terms). `weight` weights the CE.
    """
    from monai.losses import MaskedDiceLoss  # lazy: monai is slow to import and only this loss needs it

    dice = MaskedDiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)

    def loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        w = None if weight is None else weight.to(outputs["logits"].device)
        total = segmentation_loss(outputs, target, weight=w)
        labels = target.long().unsqueeze(1)
        mask = (labels != IGNORE_INDEX).float()  # all ones: MaskedDiceLoss equals DiceLoss
        labels = labels.clamp(min=0)
        for key in ("logits", "initial"):
            if key in outputs:
                total = total + dice(outputs[key].float(), labels, mask=mask)
        return total

    return loss
