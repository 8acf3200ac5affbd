"""Move a volume from one voxel grid onto another through the geometry (world coordinates), not array order.

Two paths: `reorient_to_grid` is exact (no interpolation) when the source voxels are voxels of the target
grid, up to an axis permutation, flips and an integer offset — the usual case for a label exported by
another tool on the same scan; `resample_to_grid` interpolates with SimpleITK (nearest neighbour for
labels, linear for images) for grids that truly differ, e.g. ART onto the PV grid, optionally through a
registration's world transform. `labels_to_grid` is the one placement of a label or mask onto a grid: exact
where the voxels coincide, nearest neighbour otherwise.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mpliver.io.geometry import Geometry, from_sitk, ras_to_lps_map, to_sitk


class WorldMap(Protocol):
    """A world-space affine map p_moving = matrix @ p_target + translation (RAS mm), e.g. a registration."""

    matrix: np.ndarray
    translation: np.ndarray


def grid_index_map(src: Geometry, dst: Geometry,
                   tol_vox: float = 1e-3) -> tuple[np.ndarray, np.ndarray] | None:
    """The integer map dst_ijk = perm @ src_ijk + offset when each source voxel centre is a target voxel.

    Returns (perm (3×3 signed permutation, int), offset (3,), int) or None when the grids do not coincide
    (different spacing, rotation or a sub-voxel shift beyond `tol_vox` voxels).
    """
    m = np.linalg.inv(dst.affine) @ src.affine
    lin, off = m[:3, :3], m[:3, 3]
    perm = np.rint(lin)
    if np.max(np.abs(lin - perm)) > tol_vox or np.max(np.abs(off - np.rint(off))) > tol_vox:
        return None
    # A signed permutation has exactly one ±1 per row and per column.
    if not (np.all(np.sum(np.abs(perm), axis=0) == 1) and np.all(np.sum(np.abs(perm), axis=1) == 1)):
        return None
    return perm.astype(int), np.rint(off).astype(int)


def same_voxels(src: Geometry, dst: Geometry) -> bool:
    """True when both grids hold exactly the same voxel centres, possibly in another axis order/direction."""
    mapping = grid_index_map(src, dst)
    if mapping is None:
        return False
    perm, off = mapping
    mapped = src.corners() @ perm.T + off
    return bool(np.all(mapped.min(axis=0) == 0) and np.all(mapped.max(axis=0) == np.asarray(dst.shape) - 1))


def reorient_to_grid(array: np.ndarray, src: Geometry, dst: Geometry, fill: float = 0) -> np.ndarray | None:
    """Place `array` (on grid `src`) onto grid `dst` exactly, or return None if the grids do not coincide.

    Target voxels not covered by the source get `fill`; source voxels outside the target are dropped.
    """
    mapping = grid_index_map(src, dst)
    if mapping is None:
        return None
    perm, off = mapping
    # Target axis r takes source axis a = argmax |perm[r]|, flipped where the sign is negative.
    axes = [int(np.argmax(np.abs(perm[r]))) for r in range(3)]
    signs = [int(perm[r, axes[r]]) for r in range(3)]
    moved = np.transpose(array, axes)
    start = np.empty(3, dtype=int)  # target index of moved[0, 0, 0]
    for r in range(3):
        n = moved.shape[r]
        if signs[r] < 0:
            moved = np.flip(moved, axis=r)
            start[r] = off[r] - (n - 1)  # source index n-1 lands at off - (n-1), the lowest target index
        else:
            start[r] = off[r]
    out = np.full(dst.shape, fill, dtype=array.dtype)
    src_sl, dst_sl = [], []
    for r in range(3):
        lo, hi = max(start[r], 0), min(start[r] + moved.shape[r], dst.shape[r])
        if hi <= lo:
            return out  # no overlap at all
        dst_sl.append(slice(lo, hi))
        src_sl.append(slice(lo - start[r], hi - start[r]))
    out[tuple(dst_sl)] = moved[tuple(src_sl)]
    return out


def resample_to_grid(array: np.ndarray, src: Geometry, dst: Geometry, interpolation: str = "linear",
                     fill: float = 0.0, transform: WorldMap | None = None) -> np.ndarray:
    """Resample `array` from grid `src` onto grid `dst` with SimpleITK.

    `interpolation` is "nearest" (labels; keeps the dtype) or "linear" (images; returns float32). Target
    voxels outside the source get `fill` (e.g. -1024 HU, air, for CT). `transform` maps target world points
    to source world points (a registration's result); None is the identity (the headers' geometry only).
    """
    import SimpleITK as sitk  # lazy: SimpleITK is slow to import and only resampling paths need it

    if interpolation not in ("nearest", "linear"):
        raise ValueError(f"interpolation must be 'nearest' or 'linear', got {interpolation!r}")
    if interpolation == "linear":
        image = to_sitk(np.asarray(array, dtype=np.float32), src)
        interp, out_type = sitk.sitkLinear, sitk.sitkFloat32
    else:
        image = to_sitk(np.asarray(array), src)
        interp, out_type = sitk.sitkNearestNeighbor, image.GetPixelID()
    tx = sitk.Transform()
    if transform is not None:  # ITK works in LPS: F p_m = (F A F)(F p) + F b
        matrix, translation = ras_to_lps_map(transform.matrix, transform.translation)
        tx = sitk.AffineTransform(3)
        tx.SetMatrix([float(v) for v in matrix.ravel()])
        tx.SetTranslation([float(v) for v in translation])
    reference = to_sitk(np.zeros(dst.shape, dtype=np.uint8), dst)
    out = sitk.Resample(image, reference, tx, interp, float(fill), out_type)
    result, _ = from_sitk(out)
    return result


def labels_to_grid(array: np.ndarray, src: Geometry, dst: Geometry) -> np.ndarray:
    """Put a label or mask from grid `src` onto grid `dst`, keeping its dtype: exactly (no interpolation)
    when the source voxels are target voxels (axis order, flips, an integer offset), else nearest
    neighbour."""
    placed = reorient_to_grid(array, src, dst)
    return placed if placed is not None else resample_to_grid(array, src, dst, "nearest", fill=0)
