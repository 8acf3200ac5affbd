"""Windowing, 2.5D context, the crop box, resizing, the exact inverse, and the slice orientation."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.data.orientation import slice_orientation
from mpliver.data.slices import (
    CropBox,
    SliceMapping,
    context_indices,
    crop,
    crop_resize,
    full_box,
    liver_box,
    masked_stacks,
    uncrop,
    window,
)
from mpliver.io.geometry import Geometry


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def _blob(shape, centre, radii, seed=0) -> np.ndarray:
    """An irregular 2-D blob (an ellipse with a wavy radius), a liver-like label."""
    yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ang = np.arctan2(yy - centre[0], xx - centre[1])
    rng = np.random.default_rng(seed)
    wobble = 1 + 0.12 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.06 * np.cos(5 * ang + rng.uniform(0, 6))
    r = np.sqrt(((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2)
    return (r < wobble).astype(np.uint8)


def test_window_hand_values():
    hu = np.array([-1000, -70, 55, 180, 400], dtype=np.int16)
    np.testing.assert_allclose(window(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert window(hu).dtype == np.float32


def test_context_indices_replicate_edges_and_stack():
    np.testing.assert_array_equal(context_indices(np.array([0, 1, 5]), 6, 1),
                                  [[0, 0, 1], [0, 1, 2], [4, 5, 5]])
    slices = np.arange(5)[:, None, None] * np.ones((1, 2, 2))
    st = masked_stacks(slices[None], np.ones(slices.shape), 1, masked=False)[:, 0]  # one phase
    assert st.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(st[:, :, 0, 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])


def test_liver_box_hand_values():
    mask = np.zeros((2, 64, 80), np.uint8)
    mask[1, 10:20, 30:50] = 1
    # extents 10 and 20 mm + 2 x 5 mm margin -> a 30 mm square centred on the mask
    assert liver_box(mask, (1.0, 1.0), 5.0) == CropBox((0, 25), (30, 30))
    # anisotropic pixels: 20 mm and 50 mm -> 50 mm square = 50 x 25 voxels
    box = liver_box(mask, (1.0, 2.0), 5.0)
    assert box.size == (50, 25)
    assert box.start[0] <= 10 and box.start[0] + 50 > 19 and box.start[1] <= 30 and box.start[1] + 25 > 49
    assert full_box((40, 60), (1.0, 1.0)) == CropBox((-10, 0), (60, 60))
    # at least 100 mm wide: 100 x 100 voxels about the same centre (19.5, 29.5)
    assert full_box((40, 60), (1.0, 1.0), min_side_mm=100.0) == CropBox((-30, -20), (100, 100))


def test_crop_pads_outside_the_image():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = crop(img, CropBox((-1, 2), (3, 3)), fill=-5)
    np.testing.assert_array_equal(out, [[-5, -5, -5], [2, 3, -5], [6, 7, -5]])


def test_round_trip_is_exact_when_the_crop_keeps_the_resolution():
    label = _blob((96, 96), (40, 52), (18, 24))[None]                # (1, H, W)
    box = liver_box(label, (1.0, 1.0), 6.0)
    assert box.size[0] == box.size[1]
    n = box.size[0]
    back = uncrop(crop_resize(label, box, n, "nearest"), box, label.shape[-2:], "nearest")
    assert _dice(back, label) == 1.0 and np.array_equal(back, label)
    img = np.random.default_rng(1).normal(size=(1, 96, 96)).astype(np.float32)
    back_img = uncrop(crop_resize(img, box, n, "linear"), box, img.shape[-2:], "linear")
    h0, w0 = max(box.start[0], 0), max(box.start[1], 0)
    np.testing.assert_array_equal(back_img[:, h0:box.start[0] + n, w0:box.start[1] + n],
                                  img[:, h0:box.start[0] + n, w0:box.start[1] + n])


@pytest.mark.parametrize("size", [48, 64, 160])
def test_round_trip_with_resizing(size):
    label = _blob((128, 128), (60, 66), (30, 40), seed=3)[None]
    box = liver_box(label, (1.0, 1.0), 10.0)                        # about 102 x 102 voxels
    back = uncrop(crop_resize(label, box, size, "nearest"), box, label.shape[-2:], "nearest")
    assert _dice(back, label) >= 0.98
    if size > box.size[0]:  # upsampling then downsampling by nearest-exact is lossless
        assert np.array_equal(back, label)
    # probabilities: linear both ways, thresholded at 0.5
    prob = uncrop(crop_resize(label.astype(np.float32), box, size, "linear"), box, label.shape[-2:], "linear")
    assert _dice(prob > 0.5, label) >= 0.98


def test_slice_orientation_flips_and_permutes_back():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(6, 7, 5)).astype(np.float32)
    ras = Geometry.from_spacing(vol.shape, (1.0, 1.5, 3.0))
    # the same voxels stored LPS: i and j reversed, affine with negative x and y
    lps_aff = np.diag([-1.0, -1.5, 3.0, 1.0])
    lps_aff[:3, 3] = [5.0, 9.0, 0.0]
    lps = Geometry(lps_aff, vol.shape)
    vol_lps = vol[::-1, ::-1, :]
    assert np.allclose(ras.index_to_world([0, 0, 0]), lps.index_to_world([5, 6, 0]))
    o_ras, o_lps = slice_orientation(ras), slice_orientation(lps)
    np.testing.assert_array_equal(o_ras.to_slices(vol), o_lps.to_slices(vol_lps))
    np.testing.assert_array_equal(o_lps.from_slices(o_lps.to_slices(vol_lps)), vol_lps)
    # axial axis found from the affine: here the first array axis points to S
    perm_aff = np.zeros((4, 4))
    perm_aff[0, 1] = perm_aff[1, 2] = perm_aff[2, 0] = 1.0
    perm_aff[3, 3] = 1.0
    o = slice_orientation(Geometry(perm_aff, vol.shape))
    assert o.axial_axis == 0 and o.plane_axes == (1, 2)
    assert o.to_slices(vol).shape == (6, 7, 5)
    assert slice_orientation(ras, axial_axis=0).axial_axis == 0


def test_slice_mapping_pastes_predictions_back_onto_the_volume():
    """Forward (orient, select slices, crop, resize) by hand, then SliceMapping.paste_back must invert it."""
    label = np.zeros((20, 40, 36), np.uint8)                          # axial axis 0 here
    for k in range(4, 15):
        label[k] = _blob((40, 36), (18 + k % 3, 17), (9, 11), seed=k)
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 2.0, -1.0, 1.0, 1.0  # axis 1 points to L
    geom = Geometry(affine, label.shape)
    orient = slice_orientation(geom)
    assert orient.axial_axis == 0 and orient.plane_flips == (True, False)
    slices = orient.to_slices(label)
    centres = np.arange(4, 15)
    box = liver_box(slices[centres], orient.plane_spacing(geom), 3.0)
    for n, exact in ((box.size[0], True), (64, True), (20, False)):
        pred = crop_resize(slices[centres], box, n, "nearest")
        mapping = SliceMapping(orient, box, label.shape, tuple(int(c) for c in centres), n)
        back = SliceMapping.from_dict(mapping.to_dict()).paste_back(pred, mode="nearest")
        assert back.shape == label.shape
        if exact:
            np.testing.assert_array_equal(back, label)
        else:
            assert _dice(back, label) >= 0.9
    # channels (probabilities) come back as (C, i, j, k)
    probs = np.stack([1 - slices[centres], slices[centres]], 1).astype(np.float32)
    mapping = SliceMapping(orient, box, label.shape, tuple(int(c) for c in centres), box.size[0])
    back = mapping.paste_back(crop_resize(probs, box, box.size[0], "linear"), mode="linear")
    assert back.shape == (2, *label.shape)
    np.testing.assert_array_equal(back[1] > 0.5, label > 0)
    # one fill per channel: background probability 1 outside the box and outside the predicted slices
    back = mapping.paste_back(crop_resize(probs, box, box.size[0], "linear"), mode="linear", fill=(1.0, 0.0))
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-6)
    assert back[0, 0].min() == 1.0 and back[1, 0].max() == 0.0
