"""CT noise: Gaussian, lightly blurred in-plane (SPEC §6: σ 8-20 HU; 10-16 HU measured on real CT)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def blurred_noise(rng: np.random.Generator, shape: tuple[int, ...], sd: float, blur_vox: float) -> np.ndarray:
    """Zero-mean noise of standard deviation `sd` (after blurring) with in-plane Gaussian blur `blur_vox`."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if blur_vox <= 0:
        return white * np.float32(sd)
    sigma = (blur_vox, blur_vox, 0.0)
    blurred = ndimage.gaussian_filter(white, sigma=sigma, mode="wrap")
    # The SD of filtered unit white noise is the L2 norm of the (discrete) kernel: its impulse response.
    impulse = np.zeros((17, 17, 1), dtype=np.float64)
    impulse[8, 8, 0] = 1.0
    gain = float(np.sqrt(np.sum(ndimage.gaussian_filter(impulse, sigma=sigma, mode="constant") ** 2)))
    return blurred * np.float32(sd / gain)
