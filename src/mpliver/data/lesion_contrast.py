"""How well each lesion of a label shows in each phase: its contrast to the liver around it, in units of the
liver parenchyma's spread (a contrast-to-noise ratio, CNR).

Why: a label marks every lesion, also those that are iso-attenuating in a phase (FNH in the portal-venous
phase, some HCC in the arterial one). The phantom draws such lesions on purpose, as real livers have them.
A network trained to mark a lesion that its input phases do not show learns to mark normal-looking liver,
and on real livers it then calls large areas of healthy parenchyma tumour. `data.faint_lesion_cnr` leaves
such lesions out of the loss (`mpliver.data.dataset.SliceDataset`); this module measures them, from the
images alone, so the same rule serves the phantom and real archives.

The CNR of lesion L in a phase: (median HU of L - median HU of the liver within `ring_mm` of L) divided by
the robust SD (1.4826 x MAD) of the liver parenchyma outside every lesion. Lesions smaller than
`min_voxels` are too small to measure and count as visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mpliver.io.labels import LIVER, TUMOR

MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its SD


@dataclass(frozen=True)
class LesionContrast:
    """One connected lesion (`index` >= 1 in the component map): its size and its CNR per phase."""

    index: int
    voxels: int
    cnr: dict[str, float]

    def visible(self, phases: Sequence[str], threshold: float) -> bool:
        """True when |CNR| reaches `threshold` in at least one of `phases` (or the lesion was too small to
        measure, CNR NaN)."""
        values = [self.cnr[p] for p in phases]
        return any(not np.isfinite(v) or abs(v) >= threshold for v in values)

    def to_dict(self) -> dict:
        return {"index": self.index, "voxels": self.voxels,
                "cnr": {p: (None if not np.isfinite(v) else round(float(v), 3)) for p, v in self.cnr.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> LesionContrast:
        return cls(int(d["index"]), int(d["voxels"]),
                   {p: (float("nan") if v is None else float(v)) for p, v in d["cnr"].items()})


def robust_sd(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the SD of normal data, unmoved by vessels or outliers."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))


def lesion_components(label: np.ndarray) -> tuple[np.ndarray, int]:
    """(int32 map of connected tumour components 1..n, 0 elsewhere; n), face connectivity in 3-D."""
    components, n = ndimage.label(np.asarray(label) == TUMOR)
    return components.astype(np.int32, copy=False), int(n)


def lesion_contrast(phases: Mapping[str, np.ndarray], label: np.ndarray, spacing: Sequence[float],
                    components: np.ndarray | None = None, ring_mm: float = 5.0,
                    min_voxels: int = 8) -> list[LesionContrast]:
    """The CNR of every connected lesion of `label` (0/1/2) in every phase; `phases` are HU volumes on the
    label's grid (registered), `spacing` the grid's voxel size in mm."""
    label = np.asarray(label)
    for name, image in phases.items():
        if np.shape(image) != label.shape:
            raise ValueError(f"phase {name}: shape {np.shape(image)} differs from the label's {label.shape}")
    if components is None:
        components, _ = lesion_components(label)
    parenchyma = label == LIVER
    spread = {name: robust_sd(np.asarray(image)[parenchyma]) for name, image in phases.items()}
    radius = np.maximum(1, np.round(ring_mm / np.asarray(spacing, dtype=np.float64))).astype(int)
    ball = _ellipsoid(radius)
    out = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - r, 0), s.stop + r) for s, r in zip(box, radius, strict=True))
        lesion = components[grown] == index
        voxels = int(lesion.sum())
        ring = ndimage.binary_dilation(lesion, structure=ball) & parenchyma[grown]
        measurable = voxels >= min_voxels and bool(ring.any())
        cnr = {}
        for name, image in phases.items():
            if not measurable or not spread[name] > 0:
                cnr[name] = float("nan")
                continue
            local = np.asarray(image)[grown].astype(np.float64)
            contrast = float(np.median(local[lesion])) - float(np.median(local[ring]))
            cnr[name] = contrast / spread[name]
        out.append(LesionContrast(index, voxels, cnr))
    return out


def _ellipsoid(radius: np.ndarray) -> np.ndarray:
    """A boolean ellipsoid with the given half-axes in voxels (the ring's reach, isotropic in mm)."""
    axes = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    return sum((a / max(r, 1)) ** 2 for a, r in zip(axes, radius, strict=True)) <= 1.0
