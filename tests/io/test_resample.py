"""Moving volumes between grids: exact reorientation and SimpleITK resampling vs hand-made references."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mpliver.io.geometry import Geometry, lps_to_ras, ras_to_lps, ras_to_lps_map, to_sitk
from mpliver.io.resample import grid_index_map, reorient_to_grid, resample_to_grid, same_voxels


def test_reorient_flip_and_permutation_matches_world_positions():
    dst = Geometry.from_spacing((5, 4, 3), (1.0, 2.0, 3.0), origin=(10, 20, 30))
    # Source: axes (k, i, j) of dst, with i flipped; built by hand.
    a = np.zeros((4, 4))
    a[3, 3] = 1
    a[:3, 0] = [0, 0, 3.0]  # src axis 0 = dst k
    a[:3, 1] = [-1.0, 0, 0]  # src axis 1 = dst i, flipped
    a[:3, 2] = [0, 2.0, 0]  # src axis 2 = dst j
    a[:3, 3] = dst.index_to_world([4, 0, 0])
    src = Geometry(a, (3, 5, 4))
    values = np.arange(60, dtype=np.int32).reshape(3, 5, 4)
    out = reorient_to_grid(values, src, dst)
    assert out is not None and same_voxels(src, dst)
    for idx in np.ndindex(values.shape):  # each source voxel lands at the dst voxel of the same world point
        d = np.rint(dst.world_to_index(src.index_to_world(idx))).astype(int)
        assert out[tuple(d)] == values[idx]


def test_reorient_partial_overlap_and_mismatch():
    dst = Geometry.from_spacing((6, 6, 6), (1, 1, 1))
    src = Geometry.from_spacing((4, 4, 4), (1, 1, 1), origin=(4, -2, 1))
    out = reorient_to_grid(np.ones((4, 4, 4), np.uint8), src, dst, fill=0)
    expected = np.zeros((6, 6, 6), np.uint8)
    expected[4:6, 0:2, 1:5] = 1
    np.testing.assert_array_equal(out, expected)
    assert not same_voxels(src, dst)
    half = Geometry.from_spacing((4, 4, 4), (1, 1, 1), origin=(0.5, 0, 0))
    assert grid_index_map(half, dst) is None and reorient_to_grid(np.ones((4, 4, 4)), half, dst) is None


def test_resample_linear_shifted_cube_and_fill():
    dst = Geometry.from_spacing((20, 20, 10), (1.0, 1.0, 2.0))
    src = Geometry.from_spacing((20, 20, 10), (1.0, 1.0, 2.0), origin=(3.0, -2.0, 4.0))
    vol = np.full(src.shape, 40.0, np.float32)
    vol[5:8, 6:9, 2:4] = 500.0  # world x 8..10, y 4..6, z 8..10 (mm)
    out = resample_to_grid(vol, src, dst, "linear", fill=-1024)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[8:11, 4:7, 4:6], 500.0, atol=1e-3)
    assert np.count_nonzero(out > 400) == 3 * 3 * 2
    assert out[0, 0, 0] == -1024  # outside the source field of view (x < 3 mm)
    lab = np.zeros(src.shape, np.uint8)
    lab[5:8, 6:9, 2:4] = 2
    out_lab = resample_to_grid(lab, src, dst, "nearest")
    assert out_lab.dtype == np.uint8 and set(np.unique(out_lab)) == {0, 2}
    assert np.count_nonzero(out_lab) == 18 and np.all(out_lab[8:11, 4:7, 4:6] == 2)


def test_transform_moves_the_sample_and_corners_are_the_grid_corners():
    """A world transform shifts where the target samples the source; Geometry.corners names the 8 corners."""
    g = Geometry.from_spacing((6, 5, 4), (1.0, 1.0, 1.0))
    vol = np.zeros(g.shape, np.float32)
    vol[3, 2, 1] = 1.0
    shift = SimpleNamespace(matrix=np.eye(3), translation=np.array([1.0, 0.0, 0.0]))  # p_src = p + (1, 0, 0)
    out = resample_to_grid(vol, g, g, "linear", fill=0.0, transform=shift)
    assert out[2, 2, 1] == 1.0 and out.sum() == 1.0
    np.testing.assert_array_equal(resample_to_grid(vol, g, g, "linear", fill=0.0), vol)
    corners = g.corners()
    assert corners.shape == (8, 3) and {tuple(c) for c in corners} == {
        (i, j, k) for i in (0, 5) for j in (0, 4) for k in (0, 3)}


def test_ras_lps_flip_is_its_own_inverse_and_matches_itk():
    g = Geometry.from_spacing((3, 3, 3), (1.0, 2.0, 3.0), origin=(10.0, -20.0, 30.0))
    assert to_sitk(np.zeros(g.shape, np.float32), g).GetOrigin() == tuple(ras_to_lps(g.origin))
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(lps_to_ras(ras_to_lps(a)), a)
    m, t = np.arange(9.0).reshape(3, 3), np.array([1.0, 2.0, 3.0])
    f = np.diag([-1.0, -1.0, 1.0])
    mm, tt = ras_to_lps_map(m, t)
    np.testing.assert_array_equal(mm, f @ m @ f)
    np.testing.assert_array_equal(tt, f @ t)
