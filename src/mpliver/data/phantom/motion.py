"""Inter-phase motion (docs/method.md §6): a rigid translation plus a small smooth deformation; the ART grid.

Convention (the contract of `SyntheticCase.motion_mm`): the anatomy at world point p in PV appears at
p + motion_mm + D(p) in ART, with D the small smooth deformation. The ART volume at its grid point q is the
anatomy at T⁻¹(q) ≈ q − m − D(q − m) (first order; D is small and smooth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpliver.data.phantom.config import PhantomConfig
from mpliver.io.geometry import Geometry


@dataclass
class Motion:
    """True rigid shift (mm, RAS) and a smooth deformation made of a few long-wavelength sine waves."""

    shift_mm: np.ndarray
    wave_vectors: np.ndarray  # (n, 3) rad/mm
    phases: np.ndarray  # (n,)
    amplitudes: np.ndarray  # (n, 3) mm

    def deformation(self, points: np.ndarray) -> np.ndarray:
        """D(p) for points (3, ...)."""
        out = np.zeros_like(points)
        for k, ph, amp in zip(self.wave_vectors, self.phases, self.amplitudes, strict=True):
            s = np.sin(sum(np.float32(k[a]) * points[a] for a in range(3)) + np.float32(ph))
            for a in range(3):
                out[a] += np.float32(amp[a]) * s
        return out

    def art_to_pv_points(self, points: np.ndarray) -> np.ndarray:
        """Where the anatomy seen at ART world points (3, ...) sits in PV: q − m − D(q − m)."""
        m = self.shift_mm.astype(np.float32).reshape((3,) + (1,) * (points.ndim - 1))
        back = points - m
        return back - self.deformation(back)


def sample_motion(rng: np.random.Generator, config: PhantomConfig) -> Motion:
    """Rigid shift: LR and AP N(0, 2 mm), head-foot N(0, 4 mm) clipped to ±10 mm; plus a deformation of at
    most `config.deformation_mm` per axis."""
    sd, clip = np.asarray(config.motion_sd_mm), np.asarray(config.motion_clip_mm)
    shift = np.clip(rng.normal(0.0, 1.0, 3) * sd, -clip, clip)
    n = 3
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(150.0, 300.0, n)
    amplitudes = rng.uniform(-1.0, 1.0, (n, 3)) * config.deformation_mm / n
    return Motion(
        shift, directions * (2 * np.pi / wavelengths)[:, None], rng.uniform(0, 2 * np.pi, n), amplitudes
    )


def pv_geometry(config: PhantomConfig) -> Geometry:
    """The PV grid: RAS-aligned, positive spacing, field of view centred on the world origin."""
    shape, spacing = np.asarray(config.shape), np.asarray(config.spacing)
    return Geometry.from_spacing(tuple(shape), tuple(spacing), tuple(-(shape - 1) * spacing / 2))


def art_geometry(rng: np.random.Generator, config: PhantomConfig, pv: Geometry) -> Geometry:
    """The ART grid: same in-plane grid, a few slices more or fewer and a slice origin moved by a few mm."""
    extra = (
        int(rng.integers(-config.art_slice_jitter, config.art_slice_jitter + 1))
        if config.art_slice_jitter
        else 0
    )
    shape = (pv.shape[0], pv.shape[1], max(8, pv.shape[2] + extra))
    origin = pv.origin.copy()
    origin[2] += (
        rng.uniform(-1.0, 1.0) * config.art_origin_jitter_mm - (shape[2] - pv.shape[2]) / 2 * pv.spacing[2]
    )
    return Geometry.from_spacing(shape, tuple(pv.spacing), tuple(origin))
