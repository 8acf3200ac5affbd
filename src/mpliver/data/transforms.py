"""Training augmentation (SPEC §4.6): one random shift, rotation and scale applied identically to every phase
and to the label; optionally (issue 13) intensity augmentation from MONAI with its own draws per phase.

The array-level function holds the math (`affine_theta` + `warp`): a single sampling grid is built once and
used for the images (bilinear) and the label (nearest), so they cannot drift apart. `RandomAffine` is the thin
wrapper over a sample dict. Randomness comes from an explicit `numpy.random.Generator`, so a sample's
augmentation depends only on the seed it is given, not on the worker that draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineParams:
    """Rotation (degrees, counter-clockwise in the (W, H) = (x, y) plane), isotropic zoom (>1 enlarges the
    content) and shift (pixels along H and W; the content moves by +shift)."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class AffineAugmentation:
    """Ranges of the random affine: |shift| <= max_shift x size, |rotation| <= max_rotation_deg, zoom in
    scale_range; applied with probability `probability`."""

    max_shift: float = 0.1
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    probability: float = 1.0

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> AffineParams | None:
        if rng.random() >= self.probability:
            return None
        shift = tuple(float(rng.uniform(-self.max_shift, self.max_shift) * n) for n in size)
        return AffineParams(float(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg)),
                            float(math.exp(rng.uniform(*np.log(self.scale_range)))), shift)


def affine_theta(params: AffineParams, size: tuple[int, int]) -> torch.Tensor:
    """The (1, 2, 3) `affine_grid` matrix that maps output to input normalised (x=W, y=H) coordinates.

    Output pixel p is read from input pixel c + R^-1 (p - c - shift) / scale (c the image centre), i.e. the
    content is rotated, zoomed about the centre and then shifted.
    """
    h, w = size
    a = math.radians(params.rotation_deg)
    rot_inv = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / params.scale
    # pixel -> normalised coordinates (align_corners=False): x_n = (2 x + 1) / W - 1, 2/W about the centre
    scale_xy = np.diag([2.0 / w, 2.0 / h])
    m = scale_xy @ rot_inv @ np.linalg.inv(scale_xy)
    shift_n = np.array([params.shift[1] * 2.0 / w, params.shift[0] * 2.0 / h])
    theta = np.zeros((2, 3))
    theta[:, :2] = m
    theta[:, 2] = -m @ shift_n
    return torch.tensor(theta, dtype=torch.float32)[None]


def sampling_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The (1, H, W, 2) grid of `theta`, computed once and shared by every array of a sample."""
    return F.affine_grid(theta, [1, 1, *size], align_corners=False)


def warp(x: torch.Tensor, theta: torch.Tensor | None = None, mode: str = "bilinear",
         grid: torch.Tensor | None = None) -> torch.Tensor:
    """Warp (C, H, W) by `theta` (or a precomputed `grid`) with zero padding; mode 'bilinear' for images,
    'nearest' for labels."""
    if grid is None:
        grid = sampling_grid(theta, tuple(x.shape[-2:]))
    out = F.grid_sample(x[None].float(), grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    return out.to(x.dtype) if mode == "nearest" else out


class RandomAffine:
    """Dict wrapper: warps sample['phases'] ((P, C, H, W), bilinear) and sample['label'] ((H, W), nearest)
    with one shared random affine."""

    def __init__(self, augmentation: AffineAugmentation | None = None,
                 image_keys: tuple[str, ...] = ("phases",), label_keys: tuple[str, ...] = ("label",)):
        self.augmentation = augmentation or AffineAugmentation()
        self.image_keys, self.label_keys = image_keys, label_keys

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        size = tuple(sample[self.label_keys[0]].shape[-2:]) if self.label_keys else \
            tuple(sample[self.image_keys[0]].shape[-2:])
        params = self.augmentation.sample(rng, size)
        if params is None:
            return sample
        grid = sampling_grid(affine_theta(params, size), size)
        out = dict(sample)
        for key in self.image_keys:
            x = sample[key]
            out[key] = warp(x.reshape(-1, *x.shape[-2:]), mode="bilinear", grid=grid).reshape(x.shape)
        for key in self.label_keys:
            y = sample[key]
            out[key] = warp(y.reshape(1, *y.shape[-2:]), mode="nearest", grid=grid).reshape(y.shape)
        return out


@dataclass(frozen=True)
class IntensityAugmentation:
    """nnU-Net-style intensity augmentation from MONAI, for images windowed to [0, 1] (250 HU wide): each
    transform fires with its probability, with its own draw for every phase (phases differ in contrast,
    noise and sharpness on real scanners, so one shared draw would teach nothing about their mismatch).

    noise: Gaussian, SD up to `noise_std` (0.04 = 10 HU); blur: Gaussian σ in `blur_sigma` pixels;
    brightness: × (1 + U(−scale, scale)); shift: + U(−shift, shift) (0.08 = 20 HU); contrast: gamma in
    `gamma` on the min-max normalised image; low resolution: down- and up-sampled by a zoom in `zoom`.
    The result is clipped to [0, 1] again, as the HU window clips real images.
    """

    noise_prob: float = 0.15
    noise_std: float = 0.04
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    scale_prob: float = 0.15
    scale: float = 0.25
    shift_prob: float = 0.15
    shift: float = 0.08
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    lowres_prob: float = 0.25
    zoom: tuple[float, float] = (0.5, 1.0)

    def transforms(self) -> list:
        """The MONAI array transforms, in nnU-Net order: noise, blur, brightness, contrast, low-res."""
        # lazy: monai.transforms is slow to import and only training with this option needs it
        from monai.transforms import (
            RandAdjustContrast,
            RandGaussianNoise,
            RandGaussianSmooth,
            RandScaleIntensity,
            RandShiftIntensity,
            RandSimulateLowResolution,
        )

        return [
            RandGaussianNoise(prob=self.noise_prob, std=self.noise_std),
            RandGaussianSmooth(sigma_x=self.blur_sigma, sigma_y=self.blur_sigma, prob=self.blur_prob),
            RandScaleIntensity(factors=self.scale, prob=self.scale_prob),
            RandShiftIntensity(offsets=self.shift, prob=self.shift_prob),
            RandAdjustContrast(prob=self.gamma_prob, gamma=self.gamma, retain_stats=True),
            RandSimulateLowResolution(prob=self.lowres_prob, zoom_range=self.zoom, upsample_mode="bilinear"),
        ]


class RandomIntensity:
    """Applies `IntensityAugmentation` to a (P, C, H, W) phase stack, each phase with its own draws; the C
    adjacent slices of a phase share them (one scan). Deterministic for the generator it is given."""

    def __init__(self, augmentation: IntensityAugmentation | None = None):
        self.augmentation = augmentation or IntensityAugmentation()
        self._transforms = self.augmentation.transforms()

    def __call__(self, phases: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        out = []
        for x in phases:
            y = x.float()
            for t in self._transforms:
                t.set_random_state(seed=int(rng.integers(2**31)))
                y = t(y)
                y = y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)
            out.append(y.clamp(0.0, 1.0).to(x.dtype))
        return torch.stack(out)
