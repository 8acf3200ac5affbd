"""Continuous shapes evaluated at world points, with partial-volume occupancy.

The anatomy is a function of world position (RAS mm), so that the ART phase can be sampled from the same
anatomy at moved positions. Each shape gives an (approximate) signed distance d in mm and a surface normal;
its occupancy is a linear ramp over the voxel's extent along the normal, widened by an optional biological
blur, so edges carry partial volume. The label is occupancy >= 0.5, i.e. d <= 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpliver.io.geometry import Geometry

_EPS = 1e-6


class PointGrid:
    """World positions (3, I, J, K) of a grid's voxel centres, possibly displaced (for the moved ART anatomy).

    `crop(lo, hi)` returns index slices that hold every point inside a world box, so shapes are evaluated
    only near themselves.
    """

    def __init__(self, points: np.ndarray, spacing: np.ndarray):
        self.points = np.asarray(points, dtype=np.float32)
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.shape = tuple(self.points.shape[1:])
        self._lo = [self.points[a].min(axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
        self._hi = [self.points[a].max(axis=tuple(b for b in range(3) if b != a)) for a in range(3)]

    @classmethod
    def from_geometry(cls, geometry: Geometry, displacement=None) -> PointGrid:
        """Voxel centres of an axis-aligned `geometry`; `displacement(points) -> points` moves them."""
        axes = [geometry.origin[a] + geometry.affine[a, a] * np.arange(geometry.shape[a]) for a in range(3)]
        points = np.empty((3,) + tuple(geometry.shape), dtype=np.float32)
        points[0] = axes[0].astype(np.float32)[:, None, None]
        points[1] = axes[1].astype(np.float32)[None, :, None]
        points[2] = axes[2].astype(np.float32)[None, None, :]
        if displacement is not None:
            points = displacement(points)
        return cls(points, geometry.spacing)

    def crop(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices covering the world box [lo, hi]; None when the box misses the grid."""
        out = []
        for a in range(3):
            hit = np.nonzero((self._hi[a] >= lo[a]) & (self._lo[a] <= hi[a]))[0]
            if hit.size == 0:
                return None
            out.append(slice(int(hit[0]), int(hit[-1]) + 1))
        return tuple(out)  # type: ignore[return-value]

    def sub(self, sl: tuple[slice, slice, slice]) -> np.ndarray:
        return self.points[(slice(None),) + tuple(sl)]


def ramp(d: np.ndarray, normal: np.ndarray | None, spacing: np.ndarray, blur_mm: float = 0.0) -> np.ndarray:
    """Occupancy in [0, 1] from a signed distance (mm): a linear ramp as wide as the voxel along `normal`."""
    if normal is None:  # in-plane normal
        width = np.float32(np.sqrt(np.mean(np.square(spacing[:2]))))
    else:
        width = np.sqrt(sum((normal[a] * np.float32(spacing[a])) ** 2 for a in range(3)))
    if blur_mm > 0:
        width = np.sqrt(width**2 + np.float32(blur_mm) ** 2)
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32)


def ellipsoid(p: np.ndarray, center, semi) -> tuple[np.ndarray, np.ndarray]:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid, and its unit normal."""
    q = [(p[a] - np.float32(center[a])) / np.float32(semi[a]) for a in range(3)]
    r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    g = [q[a] / np.float32(semi[a]) for a in range(3)]
    gn = np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2) + _EPS
    d = (r - 1.0) * r / gn
    return d, np.stack([g[a] / gn for a in range(3)])


def elliptic_cylinder(p: np.ndarray, center_xy, semi_xy) -> tuple[np.ndarray, None]:
    """Approximate signed distance to an infinite elliptic cylinder along z. The normal lies in-plane, where
    the spacing is isotropic, so no normal is returned (`ramp` then uses the in-plane voxel size)."""
    qx = (p[0] - np.float32(center_xy[0])) / np.float32(semi_xy[0])
    qy = (p[1] - np.float32(center_xy[1])) / np.float32(semi_xy[1])
    r = np.sqrt(qx * qx + qy * qy)
    qx /= np.float32(semi_xy[0])
    qy /= np.float32(semi_xy[1])
    gn = np.sqrt(qx * qx + qy * qy) + _EPS
    return (r - 1.0) * r / gn, None


def capsule(p: np.ndarray, a, b, r_a: float, r_b: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to a tapered tube from a (radius r_a) to b (radius r_b), and its unit normal."""
    a = np.asarray(a, dtype=np.float32)
    ab = np.asarray(b, dtype=np.float32) - a
    ap = p - a[:, None, None, None]
    t = np.clip(np.tensordot(ab, ap, axes=(0, 0)) / np.float32(ab @ ab + _EPS), 0.0, 1.0)
    v = ap - t[None] * ab[:, None, None, None]
    dist = np.sqrt(np.sum(v * v, axis=0)) + _EPS
    return dist - (r_a + (r_b - r_a) * t), v / dist


def capsule_box(a, b, r: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.minimum(a, b) - r, np.maximum(a, b) + r


def smooth_min(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union of two distance fields, blend radius k mm)."""
    h = np.clip(0.5 + 0.5 * (d2 - d1) / k, 0.0, 1.0)
    return d2 + (d1 - d2) * h - k * h * (1.0 - h)


class SmoothField:
    """A random smooth scalar field over a world box: Gaussian noise on a coarse grid (cell `cell_mm`),
    smoothed and interpolated trilinearly, scaled to unit SD. Deterministic for the generator state."""

    def __init__(self, rng: np.random.Generator, lo, hi, cell_mm: float):
        self.lo = np.asarray(lo, dtype=np.float64) - 2 * cell_mm
        self.cell = float(cell_mm)
        n = np.ceil((np.asarray(hi, dtype=np.float64) + 2 * cell_mm - self.lo) / cell_mm).astype(int) + 1
        values = ndimage.gaussian_filter(rng.standard_normal(tuple(n)), sigma=1.0, mode="wrap")
        values = np.clip((values - values.mean()) / (values.std() + 1e-9), -3.0, 3.0)  # bounded: see anatomy
        self.values = values.astype(np.float32)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        idx = [(p[a] - np.float32(self.lo[a])) / np.float32(self.cell) for a in range(3)]
        return ndimage.map_coordinates(self.values, idx, order=1, mode="nearest").astype(np.float32)
