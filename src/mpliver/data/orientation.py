"""Which array axis holds the axial slices, and how a volume maps to a stack of slices and back.

The phantom writes RAS-aligned volumes with the third axis axial, but real NIfTI may store any orientation.
A `SliceOrientation` fixes one convention for the network: slices are (K, H, W), K the axial axis in array
order, H the in-plane axis closest to R (left-right) and W the one closest to A (anterior-posterior), each
flipped where needed so that the index grows towards R and A. So a volume stored LPS and the same volume
stored RAS give identical slices, and the mapping is undone exactly by `from_slices`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpliver.io.geometry import Geometry


@dataclass(frozen=True)
class SliceOrientation:
    """Permutation and flips between an (i, j, k) volume and its (K, H, W) slice stack."""

    axial_axis: int
    plane_axes: tuple[int, int]
    plane_flips: tuple[bool, bool]

    @property
    def perm(self) -> tuple[int, int, int]:
        return (self.axial_axis, *self.plane_axes)

    def to_slices(self, volume: np.ndarray) -> np.ndarray:
        """(i, j, k) volume -> (K, H, W) slices (a view where possible)."""
        out = np.transpose(volume, self.perm)
        for ax, flip in zip((1, 2), self.plane_flips, strict=True):
            if flip:
                out = np.flip(out, axis=ax)
        return out

    def from_slices(self, slices: np.ndarray, channel_axis: bool = False) -> np.ndarray:
        """(K, H, W) slices (or (K, C, H, W) with `channel_axis`) -> (i, j, k) volume (or (C, i, j, k))."""
        if channel_axis:
            slices = np.moveaxis(slices, 1, 0)  # (C, K, H, W)
            off = 1
        else:
            off = 0
        for ax, flip in zip((1, 2), self.plane_flips, strict=True):
            if flip:
                slices = np.flip(slices, axis=ax + off)
        inv = np.argsort(self.perm)
        if channel_axis:
            return np.ascontiguousarray(np.transpose(slices, (0, *(int(a) + 1 for a in inv))))
        return np.ascontiguousarray(np.transpose(slices, tuple(int(a) for a in inv)))

    def plane_spacing(self, geometry: Geometry) -> tuple[float, float]:
        """In-plane voxel size (mm) along H and W."""
        sp = geometry.spacing
        return float(sp[self.plane_axes[0]]), float(sp[self.plane_axes[1]])

    def to_dict(self) -> dict:
        return {"axial_axis": self.axial_axis, "plane_axes": list(self.plane_axes),
                "plane_flips": list(self.plane_flips)}

    @classmethod
    def from_dict(cls, d: dict) -> SliceOrientation:
        return cls(int(d["axial_axis"]), tuple(int(a) for a in d["plane_axes"]),
                   tuple(bool(f) for f in d["plane_flips"]))


def slice_orientation(geometry: Geometry, axial_axis: int | None = None) -> SliceOrientation:
    """The slice convention for a volume on `geometry`.

    `axial_axis=None` picks the array axis whose direction is closest to S (largest |z| cosine). Where the
    affine is not trustworthy, pass it explicitly, or better give the grid its true orientation
    (`Geometry.with_axcodes`): the in-plane axes follow the affine too.
    """
    direction = geometry.direction
    if axial_axis is None:
        axial_axis = int(np.argmax(np.abs(direction[2, :])))
    others = [a for a in range(3) if a != axial_axis]
    # dominant world axis of each in-plane array axis: order them R before A (before S), ties by array order
    dominant = [int(np.argmax(np.abs(direction[:, a]))) for a in others]
    order = sorted(range(2), key=lambda n: (dominant[n], others[n]))
    plane = tuple(others[n] for n in order)
    flips = tuple(bool(direction[dominant[n], others[n]] < 0) for n in order)
    return SliceOrientation(int(axial_axis), plane, flips)
