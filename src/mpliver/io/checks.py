"""Sanity checks on volumes read from disk: real HU values, finite numbers, matching grids."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mpliver.errors import InputError, InputWarning
from mpliver.io.geometry import Geometry
from mpliver.io.labels import LIVER, TUMOR


def check_finite(array: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse NaN or infinite voxels."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(f"{bad} NaN or infinite voxel(s) in the volume", path)


def check_hu(array: np.ndarray, path: str | Path | None = None, *, max_samples: int = 2_000_000) -> None:
    """Refuse volumes that do not hold Hounsfield units, with the figures measured and the likely cause.

    Decided on robust statistics of (a regular subsample of) the volume: CT in HU has air near -1000 and fat
    near -100 (some voxel below -50 HU in any abdominal field of view; a crop without air or fat passes when
    it spans at least 200 HU, e.g. with vessels or bone, but a crop of soft tissue alone is refused),
    and the bulk of the body (voxels above -500 HU) at soft-tissue values, median -200..300 HU. Refused, each
    with its cause: blank volumes, a range under 200 (normalised data, label maps), integers within 0..255
    saturating at 0 or 255 (8-bit display values), a volume that passes only once 1024 is subtracted (HU +
    1024: rescale missing), and anything else that is neither (another modality, e.g. MR).
    """
    check_finite(array, path)
    if array.size == 0:
        raise InputError("empty volume", path)
    flat = np.ravel(array, order="K")  # a view in the array's own order (NIfTI reads are Fortran-ordered)
    v = flat[:: max(1, -(-flat.size // max_samples))].astype(np.float64)
    lo, hi = float(np.min(flat)), float(np.max(flat))
    if lo == hi:
        raise InputError(f"all {flat.size} voxels equal {lo:.6g}: a blank volume, not CT in Hounsfield units",
                         path)
    if lo >= 0 and hi <= 255 and np.all(v == np.round(v)):
        saturated = float(np.mean((v == 0) | (v == 255)))
        if saturated >= 0.01:
            raise InputError(f"integer values within [{lo:.0f}, {hi:.0f}] with {saturated:.0%} of the voxels "
                             "at 0 or 255: looks like 8-bit display values (a windowed export), not"
                             " Hounsfield units", path)
    if hi - lo < 200 or (lo > -100 and hi < 200):
        raise InputError(f"values span [{lo:.4g}, {hi:.4g}], which does not look like CT in Hounsfield units "
                         "(expected air/fat below -100 HU and a range of several hundred HU)", path)
    problem = _hu_problem(v)
    if problem is None:
        return
    if _hu_problem(v - 1024) is None:
        raise InputError(f"values do not look like CT in Hounsfield units ({problem}), but do minus 1024: "
                         "looks like HU + 1024, rescale missing (RescaleIntercept -1024 not applied)", path)
    raise InputError(f"values do not look like CT in Hounsfield units ({problem}): another modality (MR?) or "
                     "another scale", path)


def _hu_problem(v: np.ndarray) -> str | None:
    """Why the values `v` do not look like CT in HU (figures included), or None when they do."""
    tissue = v[(v >= -1100)]  # padding outside the scan field (-2000, -3024) is no tissue
    if tissue.size == 0:
        return "no voxel above -1100"
    below = float(np.mean(tissue < -50))
    body = tissue[tissue > -500]
    if body.size == 0:
        return "every voxel below -500: no body in the field of view"
    p1, p50, p99 = np.percentile(body, [1, 50, 99])
    figures = (f"{below:.1%} of the voxels below -50 (air, fat), the voxels above -500 at median {p50:.0f} "
               f"(1st-99th percentile {p1:.0f}..{p99:.0f})")
    if not -200 <= p50 <= 300:
        return figures + ", where CT soft tissue lies at 0-100 HU"
    if below < 0.001:
        # neither air nor fat: only a crop of soft tissue can be CT, so the bulk must lie in -50..250 HU
        soft = float(np.mean((body >= -50) & (body <= 250)))
        if soft < 0.8:
            return figures + f", only {soft:.0%} of them within -50..250 (soft tissue, lacking air and fat)"
    return None


def check_label_liver(label: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse a label with tumour (2) but no liver (1) voxel: the liver class, which gives the liver mask,
    must surround the tumours (a tumour-only label would mask the network's input down to the tumours)."""
    tumour = int(np.count_nonzero(label == TUMOR))
    if tumour and not np.any(label == LIVER):
        raise InputError(f"label has {tumour} tumour voxel(s) (2) but no liver voxel (1): a tumour-only "
                         "label; mark the liver as 1 around the tumours", path)


MIN_SLICES = 3  # a 2.5D input stacks 3 adjacent slices


def axial_slice_count(geometry: Geometry) -> int:
    """Number of slices along the array axis closest to head-foot (S), the slice axis of an axial CT."""
    return int(geometry.shape[int(np.argmax(np.abs(geometry.direction[2, :])))])


def check_slices(geometry: Geometry, path: str | Path | None = None, what: str = "volume",
                 minimum: int = MIN_SLICES) -> None:
    """Refuse a volume of fewer than `minimum` axial slices, naming its file and slice count."""
    n = axial_slice_count(geometry)
    if n < minimum:
        raise InputError(f"{what} has {n} axial slice(s) (shape {tuple(geometry.shape)}); mpliver needs at "
                         f"least {minimum} (its input stacks {MIN_SLICES} adjacent slices): a localizer, a "
                         "single slice or a truncated series?", path)


def warn_lost_header(geometry: Geometry, path: str | Path | None = None) -> bool:
    """Warn (InputWarning) when an image file's header looks lost: 1 mm voxels exactly, axes along the world
    axes, and the origin at 0 or the array centred on it. That is what conversions write when they have no
    geometry (an identity affine; nibabel's default diag(-1, 1, 1) centred; SimpleITK's LPS default at 0), and
    scanners never do; a wrong orientation shows the network sagittal or mirrored slices. The LiTS 117 crop in
    ../shared/data is such a file (it is stored LPS). Returns True when it warned."""
    spacing, direction = geometry.spacing, geometry.direction
    if not np.allclose(spacing, 1.0, rtol=0.0, atol=1e-6):
        return False
    if not np.allclose(np.abs(direction), np.abs(np.round(direction)), rtol=0.0, atol=1e-6):
        return False  # oblique axes
    centre = geometry.index_to_world((np.asarray(geometry.shape, dtype=np.float64) - 1.0) / 2.0)
    if not (np.allclose(geometry.origin, 0.0, atol=1e-3) or np.allclose(centre, 0.0, atol=1.0)):
        return False
    where = f"{path}: " if path is not None else ""
    warnings.warn(InputWarning(
        f"{where}the header looks lost (1 mm voxels along the world axes, origin at 0 or centred): "
        "orientation and spacing were probably lost in a conversion; check them, as a wrong orientation "
        "shows the network sagittal or mirrored slices and puts masks on the wrong voxels"), stacklevel=2)
    return True


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
