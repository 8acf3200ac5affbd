"""Sanity checks on volumes read from disk: real HU values, finite numbers, matching grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpliver.errors import InputError
from mpliver.io.geometry import Geometry


def check_finite(array: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse NaN or infinite voxels."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(f"{bad} NaN or infinite voxel(s) in the volume", path)


def check_hu(array: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse volumes that do not hold Hounsfield units (e.g. normalised 0-1 data or a label map).

    CT in HU has air near -1000 and soft tissue at 0-100; we ask for a value range of at least 200 HU and
    a minimum below -100 HU (air or fat is in every abdominal field of view) or a maximum above 200 HU.
    """
    check_finite(array, path)
    if array.size == 0:
        raise InputError("empty volume", path)
    lo, hi = float(np.min(array)), float(np.max(array))
    if hi - lo < 200 or (lo > -100 and hi < 200):
        raise InputError(
            f"values span [{lo:.4g}, {hi:.4g}], which does not look like CT in Hounsfield units "
            "(expected air/fat below -100 HU and a range of several hundred HU)",
            path,
        )


def check_same_grid(ref: Geometry, other: Geometry, path: str | Path | None = None, what: str = "volume",
                    ref_name: str = "the PV phase") -> None:
    """Refuse a volume that is not on the reference grid (shape and voxel positions within 1e-3 mm)."""
    if not ref.same_grid(other):
        raise InputError(
            f"{what} is not on the grid of {ref_name}: shape {tuple(other.shape)} vs {tuple(ref.shape)}, "
            f"spacing {np.round(other.spacing, 3).tolist()} vs {np.round(ref.spacing, 3).tolist()}, "
            f"origin {np.round(other.origin, 2).tolist()} vs {np.round(ref.origin, 2).tolist()}",
            path,
        )
