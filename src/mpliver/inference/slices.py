"""Run a trained model over the pre-processed slices of one case and put the result back on the PV grid.

The network sees exactly what training saw: the cached 2.5D stacks of every centre slice, each slice times
its own liver mask. The tumour probability of each slice is pasted back through the case's `SliceMapping`
(bilinear, the inverse of crop + resize) and thresholded at 0.5, which is the argmax of the two classes.
This module does not know the command line, so that `crossval` and `predict` share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpliver.data.slices import SliceMapping, masked_stacks
from mpliver.io.labels import LIVER, TUMOR


@dataclass
class SlicePrediction:
    """Per-slice model output in the network's frame: `probability` (S, n, n) float32 tumour probability,
    `confidence` (S, h, w) float32 URIM confidence M at the decoder's resolution, or None without URIM."""

    probability: np.ndarray
    confidence: np.ndarray | None


@dataclass
class CasePrediction:
    """One case on the PV grid: tumour `probability` (i, j, k) float32 and the `slices` it came from."""

    probability: np.ndarray
    slices: SlicePrediction

    @property
    def tumor(self) -> np.ndarray:
        """Binary tumour mask on the PV grid (probability > 0.5, the two-class argmax)."""
        return self.probability > 0.5


@torch.no_grad()
def predict_slices(
    model: nn.Module,
    stacks: np.ndarray,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    amp_cpu: bool = False,
) -> SlicePrediction:
    """Tumour probability (softmax of the final logits, class 1) of every stack, in batches.

    `stacks` is (S, P, C, n, n); phases go in as a list (PV first). bf16 autocast on CUDA with `amp`, and on
    the CPU with `amp_cpu` (opt-in: faster on CPUs with bf16 instructions, but outside the fp32 parity
    tolerance; see benchmarks/RESULTS.md).
    `channels_last` hands the inputs over in that memory format (for a `models.inference_model` copy).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    probs, confs = [], []
    use_amp = (amp and device.type == "cuda") or (amp_cpu and device.type == "cpu")
    try:
        for start in range(0, len(stacks), max(1, batch_size)):
            batch = torch.from_numpy(np.ascontiguousarray(stacks[start : start + batch_size])).to(device)
            phases = list(batch.unbind(1))
            if channels_last:
                phases = [x.contiguous(memory_format=torch.channels_last) for x in phases]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(phases)
            probs.append(torch.softmax(out["logits"].float(), dim=1)[:, 1].cpu().numpy())
            if out.get("confidence") is not None:
                confs.append(out["confidence"].float()[:, 0].cpu().numpy())
    finally:
        model.train(was_training)
    n = stacks.shape[-1]
    probability = np.concatenate(probs) if probs else np.zeros((0, n, n), np.float32)
    confidence = np.concatenate(confs) if confs and len(confs) == len(probs) else None
    return SlicePrediction(probability.astype(np.float32), confidence)


def predict_case(
    model: nn.Module,
    images: np.ndarray,
    mask: np.ndarray,
    halo: int,
    mapping: SliceMapping,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
) -> CasePrediction:
    """Model output for one pre-processed case, with the tumour probability mapped back onto the PV grid."""
    stacks = masked_stacks(images, mask, halo)
    slices = predict_slices(model, stacks, batch_size, device, amp, channels_last)
    probability = mapping.paste_back(slices.probability, mode="linear", fill=0.0).astype(np.float32)
    return CasePrediction(probability, slices)


def predict_cached_case(
    model: nn.Module, cached, batch_size: int = 16, device: torch.device | str = "cpu", amp: bool = False,
    channels_last: bool = False,
) -> CasePrediction:
    """`predict_case` for a `mpliver.data.cache.CachedCase`."""
    return predict_case(
        model, cached.images, cached.mask, cached.halo, cached.mapping, batch_size, device, amp, channels_last
    )


def label_map(
    tumor: np.ndarray, liver: np.ndarray | None = None, restrict_to_liver: bool = True
) -> np.ndarray:
    """uint8 label map of the layout convention: 0 background, 1 liver, 2 tumour.

    With `restrict_to_liver`, tumour voxels outside `liver` are dropped: the network only ever saw the
    liver (its input is multiplied by the liver mask), so anything it marks outside is not a liver tumour.
    """
    tumor = np.asarray(tumor, dtype=bool)
    out = np.zeros(tumor.shape, dtype=np.uint8)
    if liver is not None:
        liver = np.asarray(liver, dtype=bool)
        if liver.shape != tumor.shape:
            raise ValueError(f"liver mask shape {liver.shape} differs from the prediction {tumor.shape}")
        out[liver] = LIVER
        if restrict_to_liver:
            tumor = tumor & liver
    out[tumor] = TUMOR
    return out


def most_tumor_slice(labels: Sequence[np.ndarray] | np.ndarray, fallback: np.ndarray | None = None) -> int:
    """Index of the (S, n, n) slice with the most tumour (label 2, or True) pixels; `fallback` breaks a tie
    of zeros (e.g. the prediction when the reference has no tumour), else the middle slice."""
    labels = np.asarray(labels)
    area = (labels == TUMOR if labels.dtype != bool else labels).reshape(len(labels), -1).sum(axis=1)
    if area.size and area.max() > 0:
        return int(np.argmax(area))
    if fallback is not None:
        return most_tumor_slice(fallback)
    return len(labels) // 2
