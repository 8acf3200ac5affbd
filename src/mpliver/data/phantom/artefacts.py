"""Acquisition effects drawn per case for domain randomisation (docs/phantom.md): a global HU offset and
scale, slice thickness wider than the slice spacing (partial volume along z), and streaks from dense
structures."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpliver.io.geometry import Geometry

FWHM_PER_SIGMA = 2.3548


def slice_profile_blur(hu: np.ndarray, thickness_ratio: float) -> np.ndarray:
    """Widen the slice profile from one slice spacing (what the renderer's partial volume gives) to
    `thickness_ratio` spacings: a Gaussian along z of σ = √(r² − 1) / 2.355 slices (FWHMs add in quadrature).
    """
    if thickness_ratio <= 1.0:
        return hu
    sigma = float(np.sqrt(thickness_ratio**2 - 1.0)) / FWHM_PER_SIGMA
    return ndimage.gaussian_filter1d(hu, sigma, axis=2, mode="nearest")


def global_hu(hu: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """A miscalibrated scanner: every HU scaled about 0 and shifted (air and fat move too)."""
    if scale == 1.0 and offset == 0.0:
        return hu
    return hu * np.float32(scale) + np.float32(offset)


def streaks(rng: np.random.Generator, geometry: Geometry, source_mm, amplitude: float) -> np.ndarray:
    """Streak artefacts (HU, same shape as the grid): thin bright and dark lines through a dense source (the
    spine's world x, y), fading with distance from it, of a strength varying smoothly from slice to slice."""
    shape = geometry.shape
    centre = geometry.world_to_index(np.array([source_mm[0], source_mm[1], geometry.origin[2]]))[:2]
    spacing = geometry.spacing
    x = (np.arange(shape[0]) - centre[0])[:, None] * spacing[0]
    y = (np.arange(shape[1]) - centre[1])[None, :] * spacing[1]
    r = np.sqrt(x * x + y * y)
    pattern = np.zeros(shape[:2], dtype=np.float32)
    width = 1.2 * float(np.mean(spacing[:2]))
    for _ in range(int(rng.integers(3, 9))):
        angle = rng.uniform(0.0, np.pi)
        distance = np.abs(x * np.sin(angle) - y * np.cos(angle))  # from the line through the source
        sign = 1.0 if rng.random() < 0.5 else -1.0
        pattern += np.float32(sign * rng.uniform(0.5, 1.0)) * np.exp(-0.5 * (distance / width) ** 2).astype(
            np.float32)
    pattern *= (1.0 / (1.0 + r / 80.0)).astype(np.float32)  # weaker far from the source
    per_slice = ndimage.gaussian_filter1d(rng.uniform(0.0, 1.0, shape[2]), 2.0, mode="nearest")
    per_slice = per_slice / max(float(per_slice.max()), 1e-6)
    return (np.float32(amplitude) * pattern[:, :, None] * per_slice[None, None, :].astype(np.float32))
