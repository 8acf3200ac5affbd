"""From the tumour probability to the tumour mask: the threshold, and two options against over-segmentation.

The default is the paper's: tumour where p > 0.5, inside the liver (the network only saw the liver). Models
trained on the phantom over-call on real studies (issue 13), so two classic options can prune the mask:
- hysteresis: keep a connected component of p > `threshold` only when it holds a voxel with p >= `high`
  (a lesion must be confidently seen somewhere, its border may be less sure);
- a minimum lesion volume: drop components smaller than `min_volume_ml`.
Components are 26-connected, as the lesion report and the lesion-wise metrics count them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mpliver.data.config import require
from mpliver.evaluation.lesions import label_lesions


@dataclass(frozen=True)
class Postprocess:
    """How the tumour probability becomes the tumour mask; the defaults are the paper's (p > 0.5)."""

    threshold: float = 0.5
    high: float | None = None  # hysteresis: a component needs a voxel with p >= high (None = off)
    min_volume_ml: float = 0.0  # components smaller than this are dropped (0 = off)

    def __post_init__(self) -> None:
        require(0.0 < self.threshold < 1.0, "threshold", "must be in (0, 1)", self.threshold)
        require(self.high is None or self.threshold < self.high <= 1.0, "high",
                f"must be in (threshold {self.threshold}, 1] or null", self.high)
        require(self.min_volume_ml >= 0.0, "min_volume_ml", "must be >= 0", self.min_volume_ml)

    @property
    def prunes(self) -> bool:
        """True when components are pruned (hysteresis or a minimum volume), beyond the plain threshold."""
        return self.high is not None or self.min_volume_ml > 0.0

    def describe(self) -> str:
        """One line for logs and reports, e.g. 'probability > 0.5, hysteresis 0.8, lesions >= 0.5 mL'."""
        parts = [f"probability > {self.threshold:g}"]
        if self.high is not None:
            parts.append(f"hysteresis {self.high:g}")
        if self.min_volume_ml > 0:
            parts.append(f"lesions >= {self.min_volume_ml:g} mL")
        return ", ".join(parts)


def tumor_mask(probability: np.ndarray, liver: np.ndarray | None, spacing_mm: tuple[float, ...] | np.ndarray,
               postprocess: Postprocess | None = None) -> np.ndarray:
    """The boolean tumour mask of a 3-D probability map: above the threshold, inside `liver` (when given),
    with the components `postprocess` prunes removed. `spacing_mm` gives the voxel volume."""
    pp = postprocess or Postprocess()
    probability = np.asarray(probability)
    mask = probability > pp.threshold
    if liver is not None:
        mask &= np.asarray(liver, dtype=bool)
    if not pp.prunes or not mask.any():
        return mask
    labels, n = label_lesions(mask)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    index = np.arange(1, n + 1)
    if pp.high is not None:
        keep[1:] &= np.asarray(ndimage.maximum(probability, labels, index)) >= pp.high
    if pp.min_volume_ml > 0:
        voxel_ml = float(np.prod(np.asarray(spacing_mm, dtype=np.float64))) / 1000.0
        keep[1:] &= np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_ml >= pp.min_volume_ml
    return keep[labels]
