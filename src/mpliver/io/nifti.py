"""NIfTI reading and writing that keeps the geometry exactly (nibabel; the affine goes to sform and qform)."""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from mpliver.errors import InputError
from mpliver.io.atomic import atomic_path
from mpliver.io.geometry import Geometry


def read_nifti(path: str | Path, dtype: np.dtype | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a 3-D NIfTI file into an (i, j, k) array and its geometry.

    Raises InputError (naming the file) for a missing, unreadable, truncated or non-3-D file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"unreadable or truncated NIfTI ({type(exc).__name__}: {exc})", path) from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"expected a 3-D volume, got shape {array.shape}", path)
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("missing or degenerate geometry (affine)", path)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return np.asarray(array), Geometry(affine, array.shape)


def read_geometry(path: str | Path) -> Geometry:
    """Read only the header geometry of a NIfTI file (no voxel data)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    try:
        img = nib.load(str(path))
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"unreadable NIfTI header ({exc})", path) from None
    shape = img.shape[:3] if len(img.shape) == 3 or (len(img.shape) == 4 and img.shape[3] == 1) else None
    if shape is None:
        raise InputError(f"expected a 3-D volume, got shape {img.shape}", path)
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("missing or degenerate geometry (affine)", path)
    return Geometry(affine, shape)


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    geometry: Geometry,
    description: str | None = None,
) -> Path:
    """Write an (i, j, k) array with its geometry to NIfTI, atomically. Returns the path.

    `description` goes to the header's `descrip` field (at most 80 bytes), e.g. the research-use notice.
    """
    path = Path(path)
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"{path}: array shape {array.shape} does not match geometry {geometry.shape}")
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    img = nib.Nifti1Image(array, geometry.affine)
    img.set_sform(geometry.affine, code=1)
    img.set_qform(geometry.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:79]
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
