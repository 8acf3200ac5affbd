"""CT noise: Gaussian, with in-plane correlation set by the reconstruction kernel (docs/method.md §6: σ 8-20
HU, lightly blurred; with domain randomisation σ 8-25 HU and kernels from smooth to sharp)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SHARP_SIGMA_VOX = 1.5  # the sharp kernel's noise is white minus its Gaussian low-pass at this width


def _kernel_gain(blur_vox: float, sharpness: float) -> float:
    """SD of unit white noise after the noise filter: the L2 norm of its discrete impulse response."""
    impulse = np.zeros((25, 25, 1), dtype=np.float64)
    impulse[12, 12, 0] = 1.0
    return float(np.sqrt(np.sum(_filter(impulse, blur_vox, sharpness, "constant") ** 2)))


def _filter(x: np.ndarray, blur_vox: float, sharpness: float, mode: str) -> np.ndarray:
    """(1 − s) · G_blur * x + s · (x − G_wide * x): a smooth kernel's low-pass noise blended with a sharp
    kernel's high-pass noise (its power peaks at mid to high spatial frequencies)."""
    out = x if blur_vox <= 0 else ndimage.gaussian_filter(x, sigma=(blur_vox, blur_vox, 0.0), mode=mode)
    if sharpness <= 0:
        return out
    wide = ndimage.gaussian_filter(x, sigma=(SHARP_SIGMA_VOX, SHARP_SIGMA_VOX, 0.0), mode=mode)
    return (1.0 - sharpness) * out + sharpness * (x - wide)


def blurred_noise(rng: np.random.Generator, shape: tuple[int, ...], sd: float, blur_vox: float,
                  sharpness: float = 0.0) -> np.ndarray:
    """Zero-mean noise of standard deviation `sd` (after filtering) with in-plane Gaussian blur `blur_vox`,
    blended towards a sharp kernel's high-pass texture by `sharpness` (0..1)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if blur_vox <= 0 and sharpness <= 0:
        return white * np.float32(sd)
    filtered = _filter(white, blur_vox, sharpness, "wrap")
    return (filtered * np.float32(sd / _kernel_gain(blur_vox, sharpness))).astype(np.float32)
