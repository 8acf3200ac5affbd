"""docs/method.md §5 per-case metrics against hand-computed values, a float64 brute-force recomputation and
MONAI."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from mpliver.evaluation.boxes import foreground_boxes
from mpliver.evaluation.lesions import label_lesions, lesion_detection
from mpliver.evaluation.metrics import (
    assd_rmsd,
    case_metrics,
    dice,
    rvd,
    surface_distances,
    surface_voxels,
    voe,
)

SPACING = (0.7, 0.9, 2.5)


# ---- independent references ---------------------------------------------------------------------------
def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Surface by explicit 6-neighbour look-ups in a zero-padded copy (outside the image = background)."""
    padded = np.zeros(tuple(s + 2 for s in mask.shape), dtype=bool)
    padded[1:-1, 1:-1, 1:-1] = mask
    out = np.zeros_like(mask)
    for i, j, k in np.argwhere(mask):
        p = (i + 1, j + 1, k + 1)
        for axis in range(3):
            for step in (-1, 1):
                q = list(p)
                q[axis] += step
                if not padded[tuple(q)]:
                    out[i, j, k] = True
    return out


def brute_directed(src: np.ndarray, dst: np.ndarray, spacing) -> np.ndarray:
    """For each surface voxel of src, the min float64 Euclidean distance (mm) to all surface voxels of dst."""
    sp = np.asarray(spacing, dtype=np.float64)
    a = np.argwhere(brute_surface(src)).astype(np.float64) * sp
    b = np.argwhere(brute_surface(dst)).astype(np.float64) * sp
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)


def brute_pooled(ref, pred, spacing) -> tuple[float, float]:
    d1, d2 = brute_directed(ref, pred, spacing), brute_directed(pred, ref, spacing)
    n = d1.size + d2.size
    return (d1.sum() + d2.sum()) / n, math.sqrt(((d1**2).sum() + (d2**2).sum()) / n)


def random_blobs(seed: int, shape=(16, 14, 10), density=0.02, grow=2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.binary_dilation(rng.random(shape) < density, iterations=grow)


def cube(shape, lo, size) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, a + size) for a in lo)] = True
    return m


# ---- hand-computed -----------------------------------------------------------------------------------------
def test_two_cubes_offset_by_one_voxel_by_hand():
    # 4x4x4 cubes, B shifted by one voxel along i (0.7 mm). |A| = |B| = 64, |A∩B| = 48, |A∪B| = 80.
    a = cube((10, 10, 10), (2, 2, 2), 4)
    b = cube((10, 10, 10), (3, 2, 2), 4)
    assert dice(a, b) == pytest.approx(100 * 2 * 48 / 128)  # 75 %
    assert voe(a, b) == pytest.approx(100 * (1 - 48 / 80))  # 40 %
    assert rvd(a, b) == pytest.approx(0.0)
    # Each surface has 64 - 8 = 56 voxels. On S(A), the 16 voxels of the face i=2 and the 4 inner voxels of
    # the face i=5 are 0.7 mm from S(B); the other 36 lie on S(B). Symmetrically for S(B).
    assert surface_voxels(a).sum() == 56
    assd, rmsd_ = assd_rmsd(a, b, SPACING)
    assert assd == pytest.approx(40 * 0.7 / 112)  # 0.25 mm
    assert rmsd_ == pytest.approx(math.sqrt(40 * 0.7**2 / 112))


def test_rvd_is_signed():
    a = cube((8, 8, 8), (1, 1, 1), 4)  # 64
    b = cube((8, 8, 8), (1, 1, 1), 2)  # 8
    assert rvd(a, b) == pytest.approx(100 * (8 - 64) / 64)
    assert rvd(b, a) == pytest.approx(100 * (64 - 8) / 8)


def test_pooled_assd_is_not_the_mean_of_two_means():
    # S(A) = {(2,2,2)}; S(B) = {(2,2,2), (2,2,6)}. Directed: A->B = [0]; B->A = [0, 4 * 2.5 mm].
    shape = (5, 5, 9)
    a = np.zeros(shape, bool)
    a[2, 2, 2] = True
    b = a.copy()
    b[2, 2, 6] = True
    assd, rmsd_ = assd_rmsd(a, b, SPACING)
    assert assd == pytest.approx(10.0 / 3)  # pooled: (0 + 0 + 10) / 3
    assert rmsd_ == pytest.approx(math.sqrt(100.0 / 3))
    medpy_style = (0.0 + (0.0 + 10.0) / 2) / 2  # mean of the two directed means = 2.5 mm: not ours
    assert abs(assd - medpy_style) > 0.8


# ---- empty masks -------------------------------------------------------------------------------------------
def test_empty_prediction():
    a = cube((6, 6, 6), (1, 1, 1), 3)
    m = case_metrics(a, np.zeros_like(a), SPACING)
    assert m["dice"] == 0.0 and m["voe"] == 100.0 and m["rvd"] == -100.0
    assert math.isnan(m["assd"]) and math.isnan(m["rmsd"])


def test_both_empty():
    z = np.zeros((5, 5, 5), bool)
    m = case_metrics(z, z, SPACING)
    assert (m["dice"], m["voe"], m["rvd"], m["assd"], m["rmsd"]) == (100.0, 0.0, 0.0, 0.0, 0.0)


def test_empty_reference():
    b = cube((6, 6, 6), (1, 1, 1), 2)
    m = case_metrics(np.zeros_like(b), b, SPACING)
    assert m["dice"] == 0.0 and m["voe"] == 100.0
    assert math.isnan(m["rvd"]) and math.isnan(m["assd"]) and math.isnan(m["rmsd"])


def test_surface_distances_refuse_empty_masks():
    with pytest.raises(ValueError, match="undefined"):
        surface_distances(cube((5, 5, 5), (1, 1, 1), 2), np.zeros((5, 5, 5), bool), SPACING)


# ---- the image edge ----------------------------------------------------------------------------------------
def test_tumour_touching_the_image_edge_has_surface_there():
    a = cube((10, 10, 10), (0, 0, 0), 4)  # in the corner: three faces lie on the image border
    s = surface_voxels(a)
    assert s.sum() == 64 - 8  # as for a cube in the middle
    assert s[0, 1, 1]  # its only outside 6-neighbour is beyond the image
    assert np.array_equal(s, brute_surface(a))
    full = np.ones((3, 3, 3), bool)
    assert surface_voxels(full).sum() == 26  # all but the centre
    # Distances at the edge: B = A shifted by one voxel along k, both touching the border.
    b = cube((10, 10, 10), (0, 0, 1), 4)
    np.testing.assert_allclose(assd_rmsd(a, b, SPACING), brute_pooled(a, b, SPACING), rtol=1e-12)


def test_foreground_boxes_split_at_empty_slabs_without_splitting_lesions():
    m = np.zeros((30, 20, 10), bool)
    m[0:3, 0:3, 0:2] = True  # corner blob
    m[28:30, 18:20, 8:10] = True  # opposite corner
    m[10, 10, 5] = m[11, 11, 6] = True  # one 26-connected lesion (diagonal neighbours)
    boxes = foreground_boxes(m)
    assert len(boxes) == 3
    covered = np.zeros_like(m)
    for box in boxes:
        assert not covered[box].any()  # disjoint
        covered[box] = True
        assert label_lesions(m[box])[1] == 1  # one whole lesion per box here
    assert not (m & ~covered).any()  # every voxel in a box
    assert foreground_boxes(np.zeros((4, 4, 4), bool)) == []


# ---- against float64 brute force and MONAI on anisotropic spacing ------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_assd_rmsd_match_float64_brute_force(seed):
    a, b = random_blobs(2 * seed), random_blobs(2 * seed + 1)
    assert a.any() and b.any()
    assert np.array_equal(surface_voxels(a), brute_surface(a))
    np.testing.assert_allclose(assd_rmsd(a, b, SPACING), brute_pooled(a, b, SPACING), rtol=1e-12)
    d_ab, d_ba = surface_distances(a, b, SPACING)
    np.testing.assert_allclose(np.sort(d_ab), np.sort(brute_directed(a, b, SPACING)), rtol=1e-12)
    np.testing.assert_allclose(np.sort(d_ba), np.sort(brute_directed(b, a, SPACING)), rtol=1e-12)


def _monai_assd(ref, pred, spacing) -> float:
    from monai.metrics import compute_average_surface_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_average_surface_distance(
            torch.from_numpy(pred[None, None]).float(), torch.from_numpy(ref[None, None]).float(),
            include_background=True, symmetric=True, spacing=list(spacing))
    return float(out.item())


@pytest.mark.slow  # the first MONAI import takes a few seconds
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assd_matches_monai_symmetric(seed):
    # MONAI 1.x `symmetric=True` concatenates both directed distance lists and takes one mean
    # (get_edge_surface_distance + torch.cat(...).mean()): the pooled form, as ours, and not medpy's mean of
    # two means; its surface is `mask ^ binary_erosion(mask)` (6-neighbour cross, border as background), as
    # ours. So the two agree on arbitrary shapes, up to MONAI's float32 output.
    a, b = random_blobs(10 + 2 * seed), random_blobs(11 + 2 * seed)
    assert assd_rmsd(a, b, SPACING)[0] == pytest.approx(_monai_assd(a, b, SPACING), rel=1e-5)


@pytest.mark.slow
def test_monai_symmetric_is_pooled_on_the_asymmetric_example():
    a = np.zeros((5, 5, 9), bool)
    a[2, 2, 2] = True
    b = a.copy()
    b[2, 2, 6] = True
    assert _monai_assd(a, b, SPACING) == pytest.approx(10.0 / 3, rel=1e-6)


def test_case_metrics_equal_the_full_volume_computation():
    # The boxed fast path must give exactly the values computed on the whole image: brute force, and scipy's
    # Euclidean distance transform (sampling=spacing) of the complement of the other surface.
    a = cube((40, 30, 12), (1, 2, 0), 5)
    a[39, 29, 11] = True  # a lone reference voxel in the far corner: a lesion the prediction misses
    b = cube((40, 30, 12), (3, 3, 1), 6)
    b[20, 0, 11] = b[0, 29, 5] = True  # two scattered false positives on the image border
    m = case_metrics(a, b, SPACING)
    ref_assd, ref_rmsd = brute_pooled(a, b, SPACING)
    assert m["assd"] == pytest.approx(ref_assd, rel=1e-12) and m["rmsd"] == pytest.approx(ref_rmsd, rel=1e-12)
    sa, sb = brute_surface(a), brute_surface(b)
    edt_ab = ndimage.distance_transform_edt(~sb, sampling=SPACING)[sa]
    edt_ba = ndimage.distance_transform_edt(~sa, sampling=SPACING)[sb]
    d_ab, d_ba = surface_distances(a, b, SPACING)
    np.testing.assert_allclose(np.sort(d_ab), np.sort(edt_ab), rtol=1e-12)
    np.testing.assert_allclose(np.sort(d_ba), np.sort(edt_ba), rtol=1e-12)
    assert (m["ref_voxels"], m["pred_voxels"]) == (126, 218)
    assert m["intersection_voxels"] == int((a & b).sum())
    assert (m["n_ref_lesions"], m["n_pred_lesions"], m["n_ref_detected"], m["n_pred_hits"]) == (2, 3, 1, 1)
    # by hand: recall 1/2, precision 1/3, F1 = 2 * 0.5 * (1/3) / (0.5 + 1/3) = 0.4
    det = lesion_detection(a, b)
    scores = (det["lesion_recall"], det["lesion_precision"], det["lesion_f1"])
    assert scores == pytest.approx((50.0, 100 / 3, 40.0))


# ---- bad input ---------------------------------------------------------------------------------------------
def test_bad_input_is_refused():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="shapes differ"):
        case_metrics(a, np.zeros((4, 4, 5), bool), SPACING)
    with pytest.raises(ValueError, match="spacing"):
        assd_rmsd(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        assd_rmsd(a, a, (1.0, 0.0, 1.0))


def test_scattered_false_positives_on_a_ct_sized_grid():
    # Two false-positive voxels in opposite corners of a 512x512x100 grid: the split boxes must still give the
    # exact values (no timing assertion here: speed is reported by benchmarks, never asserted in unit tests).
    a = np.zeros((512, 512, 100), bool)
    a[240:270, 240:270, 45:56] = True
    b = np.zeros_like(a)
    b[242:272, 240:270, 45:56] = True
    b[0, 0, 0] = b[511, 511, 99] = True
    m = case_metrics(a, b, (0.7, 0.7, 2.5))
    assert m["dice"] == pytest.approx(100 * 2 * 28 * 30 * 11 / (2 * 9900 + 2))
    assert (m["n_pred_lesions"], m["n_pred_hits"], m["lesion_precision"]) == (3, 1, pytest.approx(100 / 3))
