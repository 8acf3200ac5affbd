"""Slice-level input of the network (docs/method.md §3 "Input", §4.4): HU window, 2.5D context, crop box,
resize, and the exact inverse that maps predictions back onto the PV grid.

Conventions: slices are (K, H, W) as given by `SliceOrientation.to_slices`. The crop box is square in mm
(the liver box plus a margin, padded on its short side), so resizing to input_size x input_size scales both
in-plane axes by the same factor in mm and keeps anatomy undistorted; where the in-plane spacings differ
the box has different voxel counts per axis and the resize is anisotropic in voxels only. The box may reach
outside the image; that part is filled with 0 (background, and 0 after windowing of masked input).
Resizing uses `torch.nn.functional.interpolate` with half-pixel centres (bilinear, align_corners=False, for
images and probabilities; 'nearest-exact' for labels), so a box resized to its own size is the identity and
a label upsampled then downsampled by nearest-exact comes back unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mpliver.data.orientation import SliceOrientation


def window(volume: np.ndarray, low: float = -70.0, high: float = 180.0) -> np.ndarray:
    """Clip HU to [low, high] and scale to [0, 1] (float32)."""
    out = (np.asarray(volume, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def context_indices(centres: np.ndarray, num_slices: int, halo: int) -> np.ndarray:
    """(S, 2*halo+1) slice indices around each centre; indices past the volume ends repeat the edge slice."""
    offsets = np.arange(-halo, halo + 1)
    return np.clip(np.asarray(centres)[:, None] + offsets[None, :], 0, num_slices - 1)


def masked_stacks(images: np.ndarray, mask: np.ndarray, halo: int, masked: bool = True) -> np.ndarray:
    """(S, P, C, n, n) float32 network input from stored (P, T, n, n) images and the (T, n, n) liver mask.

    Stack s holds stored slices s .. s + 2*halo, each multiplied by its own liver mask (as the training
    `SliceDataset` does); one function serves pre-processing, cross-validation and `predict`.
    """
    num_centres = images.shape[1] - 2 * halo
    if num_centres < 1:
        raise ValueError(f"{images.shape[1]} stored slices cannot hold a 2.5D stack with halo {halo}")
    idx = np.arange(num_centres)[:, None] + np.arange(2 * halo + 1)[None, :]  # (S, C)
    x = np.asarray(images, dtype=np.float32)[:, idx]  # (P, S, C, n, n)
    if masked:
        x = x * np.asarray(mask, dtype=np.float32)[idx][None]
    return np.ascontiguousarray(np.moveaxis(x, 1, 0))


@dataclass(frozen=True)
class CropBox:
    """An in-plane box of the (H, W) plane: `start` may be negative and start + size may pass the edge."""

    start: tuple[int, int]
    size: tuple[int, int]

    def to_dict(self) -> dict:
        return {"start": list(self.start), "size": list(self.size)}

    @classmethod
    def from_dict(cls, d: dict) -> CropBox:
        return cls(tuple(int(v) for v in d["start"]), tuple(int(v) for v in d["size"]))


def _square_box(lo: np.ndarray, hi: np.ndarray, spacing: tuple[float, float], side_mm: float) -> CropBox:
    """A box of side `side_mm` (rounded up to whole voxels per axis) centred on [lo, hi] and containing it."""
    start, size = [], []
    for a in range(2):
        n = max(int(math.ceil(side_mm / spacing[a] - 1e-6)), int(hi[a] - lo[a] + 1))
        centre = (lo[a] + hi[a]) / 2.0
        s = int(math.floor(centre - (n - 1) / 2.0 + 0.5))
        s = min(s, int(lo[a]))
        s = max(s, int(hi[a]) - n + 1)
        start.append(s)
        size.append(n)
    return CropBox(tuple(start), tuple(size))


def liver_box(mask_slices: np.ndarray, spacing: tuple[float, float], margin_mm: float = 10.0) -> CropBox:
    """The in-plane bounding box of a (K, H, W) mask over all slices, plus `margin_mm`, squared in mm."""
    plane = np.asarray(mask_slices).reshape(-1, *mask_slices.shape[-2:]).any(axis=0)
    if not plane.any():
        raise ValueError("empty mask: no bounding box")
    idx = np.argwhere(plane)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    extent_mm = [(hi[a] - lo[a] + 1) * spacing[a] + 2 * margin_mm for a in range(2)]
    return _square_box(lo, hi, spacing, max(extent_mm))


def full_box(plane_shape: tuple[int, int], spacing: tuple[float, float], min_side_mm: float = 0.0) -> CropBox:
    """The whole slice, padded to a square in mm about its centre (whole-slice input, the `paper` preset),
    at least `min_side_mm` wide."""
    side = max(plane_shape[0] * spacing[0], plane_shape[1] * spacing[1], min_side_mm)
    return _square_box(np.zeros(2, int), np.asarray(plane_shape) - 1, spacing, side)


def crop(slices: np.ndarray, box: CropBox, fill: float = 0) -> np.ndarray:
    """Cut `box` out of (..., H, W) slices; the part outside the image is `fill`."""
    H, W = slices.shape[-2:]
    (h0, w0), (nh, nw) = box.start, box.size
    out = np.full((*slices.shape[:-2], nh, nw), fill, dtype=slices.dtype)
    sh0, sh1 = max(h0, 0), min(h0 + nh, H)
    sw0, sw1 = max(w0, 0), min(w0 + nw, W)
    if sh1 > sh0 and sw1 > sw0:
        out[..., sh0 - h0:sh1 - h0, sw0 - w0:sw1 - w0] = slices[..., sh0:sh1, sw0:sw1]
    return out


def resize(slices: np.ndarray, size: tuple[int, int], mode: str = "linear") -> np.ndarray:
    """Resize (..., h, w) to (..., size): 'linear' (bilinear, half-pixel centres) or 'nearest' (labels)."""
    if mode not in ("linear", "nearest"):
        raise ValueError(f"mode must be 'linear' or 'nearest', got {mode}")
    lead, (h, w) = slices.shape[:-2], slices.shape[-2:]
    if (h, w) == tuple(size):
        return np.array(slices, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(slices).reshape(-1, 1, h, w).astype(np.float32, copy=False))
    if mode == "linear":
        r = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    else:
        r = F.interpolate(t, size=tuple(size), mode="nearest-exact")
    out = r.reshape(*lead, *size).numpy()
    if mode == "nearest" or np.issubdtype(slices.dtype, np.floating):
        return out.astype(slices.dtype, copy=False)
    return out


def crop_resize(slices: np.ndarray, box: CropBox, size: int, mode: str = "linear",
                fill: float = 0) -> np.ndarray:
    """Crop (..., H, W) slices to `box` and resize to size x size."""
    return resize(crop(slices, box, fill), (size, size), mode)


def uncrop(pred: np.ndarray, box: CropBox, plane_shape: tuple[int, int], mode: str = "linear",
           fill: float = 0) -> np.ndarray:
    """The inverse of `crop_resize`: (..., n, n) -> (..., H, W); outside the box is `fill`."""
    boxed = resize(pred, tuple(box.size), mode)
    H, W = plane_shape
    out = np.full((*pred.shape[:-2], H, W), fill, dtype=boxed.dtype)
    (h0, w0), (nh, nw) = box.start, box.size
    sh0, sh1 = max(h0, 0), min(h0 + nh, H)
    sw0, sw1 = max(w0, 0), min(w0 + nw, W)
    if sh1 > sh0 and sw1 > sw0:
        out[..., sh0:sh1, sw0:sw1] = boxed[..., sh0 - h0:sh1 - h0, sw0 - w0:sw1 - w0]
    return out


@dataclass(frozen=True)
class SliceMapping:
    """Everything needed to put per-slice predictions back on the PV grid (stored with each cached case)."""

    orientation: SliceOrientation
    box: CropBox
    volume_shape: tuple[int, int, int]
    centre_slices: tuple[int, ...]   # axial index (in slice order) of each predicted slice
    input_size: int

    @property
    def plane_shape(self) -> tuple[int, int]:
        o = self.orientation
        return self.volume_shape[o.plane_axes[0]], self.volume_shape[o.plane_axes[1]]

    @property
    def num_axial(self) -> int:
        return self.volume_shape[self.orientation.axial_axis]

    def paste_back(self, pred: np.ndarray, mode: str = "linear",
                   fill: float | tuple[float, ...] = 0) -> np.ndarray:
        """(S, n, n) or (S, C, n, n) predictions of the centre slices -> (i, j, k) or (C, i, j, k), PV grid.

        mode 'nearest' for labels, 'linear' for probabilities or logits. Slices not predicted (outside the
        stored axial range) and voxels outside the box get `fill`; one fill per channel is allowed, e.g.
        (1.0, 0.0) for (background, tumour) probabilities.
        """
        pred = np.asarray(pred)
        if not np.isscalar(fill):
            if pred.ndim != 4 or len(fill) != pred.shape[1]:
                raise ValueError(f"{len(fill)} fill values for predictions of shape {pred.shape}")
            return np.stack([self.paste_back(pred[:, c], mode, float(f)) for c, f in enumerate(fill)])
        if pred.shape[0] != len(self.centre_slices) or pred.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"predictions of shape {pred.shape} do not match {len(self.centre_slices)} "
                             "slices "
                             f"of {self.input_size}x{self.input_size}")
        channel = pred.ndim == 4
        plane = uncrop(pred, self.box, self.plane_shape, mode, fill)
        full = np.full((self.num_axial, *plane.shape[1:]), fill, dtype=plane.dtype)
        full[np.asarray(self.centre_slices)] = plane
        return self.orientation.from_slices(full, channel_axis=channel)

    def to_dict(self) -> dict:
        return {"orientation": self.orientation.to_dict(), "box": self.box.to_dict(),
                "volume_shape": list(self.volume_shape), "centre_slices": list(self.centre_slices),
                "input_size": self.input_size}

    @classmethod
    def from_dict(cls, d: dict) -> SliceMapping:
        return cls(SliceOrientation.from_dict(d["orientation"]), CropBox.from_dict(d["box"]),
                   tuple(int(v) for v in d["volume_shape"]), tuple(int(v) for v in d["centre_slices"]),
                   int(d["input_size"]))
