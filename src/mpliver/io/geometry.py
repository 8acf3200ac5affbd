"""Voxel grid geometry. Arrays keep nibabel's voxel order (i, j, k); `affine` maps (i, j, k, 1) to RAS mm.

One convention everywhere: NIfTI and DICOM readers both return arrays indexed (i, j, k) with the affine of
that indexing, and SimpleITK images are converted at the boundary (`to_sitk` / `from_sitk`), where the
array order flips to (k, j, i) and the world frame to LPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ras_to_lps(world: np.ndarray) -> np.ndarray:
    """RAS -> LPS (nibabel's frame -> DICOM's and ITK's): negate the first two world coordinates.

    `world` holds world coordinates along its first axis: a point (3,), direction columns (3, 3) or the rows
    of an affine (3, 4) / (4, 4). Returns a new float64 array.
    """
    out = np.array(world, dtype=np.float64, copy=True)
    out[:2] *= -1.0
    return out


def lps_to_ras(world: np.ndarray) -> np.ndarray:
    """LPS -> RAS, the inverse of `ras_to_lps` (the same flip: it is its own inverse)."""
    return ras_to_lps(world)


def ras_to_lps_map(matrix: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The world map p' = matrix @ p + translation in the other frame, (F M F, F t): RAS <-> LPS."""
    return lps_to_ras(ras_to_lps(matrix).T).T, ras_to_lps(translation)


@dataclass(frozen=True, eq=False)
class Geometry:
    """The grid of a 3-D volume: its shape (i, j, k) and the 4×4 voxel-to-RAS affine."""

    affine: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got {affine!r}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("affine is singular (zero spacing or degenerate direction)")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """Unit direction cosines of the i, j, k axes, as columns (RAS)."""
        return self.affine[:3, :3] / self.spacing

    @classmethod
    def from_spacing(
        cls,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
        direction: np.ndarray | None = None,
    ) -> Geometry:
        """Build a geometry from spacing, origin and direction (identity = RAS-aligned axes)."""
        d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
        affine = np.eye(4)
        affine[:3, :3] = d * np.asarray(spacing, dtype=np.float64)
        affine[:3, 3] = origin
        return cls(affine, shape)

    def with_axcodes(self, axcodes: str) -> Geometry:
        """This grid with its axes pointing along `axcodes` (nibabel's letters, e.g. 'LPS': i towards the
        patient's left, j posterior, k superior); spacing and origin kept. For files whose header lost the
        orientation, where the anatomy shows it."""
        from nibabel.orientations import axcodes2ornt  # the letters' meaning is nibabel's

        codes = tuple(str(axcodes).upper())
        try:
            ornt = axcodes2ornt(codes)  # per array axis: (world axis, +1 or -1)
        except ValueError:
            ornt = None
        if ornt is None or len(codes) != 3 or len(set(ornt[:, 0].tolist())) != 3:
            raise ValueError(f"axis codes must name three different axes from R/L, A/P, S/I, got {axcodes!r}")
        direction = np.zeros((3, 3))
        direction[ornt[:, 0].astype(int), np.arange(3)] = ornt[:, 1]
        return Geometry.from_spacing(self.shape, tuple(self.spacing), tuple(self.origin), direction)

    def same_grid(self, other: Geometry, tol_mm: float = 1e-3) -> bool:
        """True when both grids have the same shape and their voxel centres agree within `tol_mm`."""
        if tuple(self.shape) != tuple(other.shape):
            return False
        corners = self.corners()
        return bool(np.max(np.abs(self.index_to_world(corners) - other.index_to_world(corners))) <= tol_mm)

    def corners(self) -> np.ndarray:
        """(8, 3) int voxel indices of the grid's corner voxels (i, j, k each 0 or its last index)."""
        last = np.asarray(self.shape) - 1
        return np.array([[i, j, k] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])])

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices (..., 3) to RAS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map RAS mm (..., 3) to (fractional) voxel indices (..., 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def to_dict(self) -> dict:
        return {"affine": self.affine.tolist(), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        return cls(np.asarray(d["affine"], dtype=np.float64), tuple(d["shape"]))

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return f"Geometry(shape={self.shape}, spacing=({sp}) mm)"


def to_sitk(array: np.ndarray, geometry: Geometry):
    """Convert an (i, j, k) array plus geometry to a SimpleITK image (LPS world frame)."""
    import SimpleITK as sitk  # lazy: slow to import; io.geometry is imported by every command

    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    lps = ras_to_lps(geometry.affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in lps[:3, 3]])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    return img


def from_sitk(image) -> tuple[np.ndarray, Geometry]:
    """Convert a SimpleITK image to an (i, j, k) array and its RAS geometry."""
    import SimpleITK as sitk  # lazy: slow to import; io.geometry is imported by every command

    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = image.GetOrigin()
    return array, Geometry(lps_to_ras(lps), array.shape)
