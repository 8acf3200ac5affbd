"""The per-case metrics of docs/method.md §5, as pure functions of boolean masks and the voxel spacing (mm).

A = reference tumour voxels, B = predicted tumour voxels. Dice, VOE and RVD are in %, ASSD and RMSD in mm.
An undefined value is `nan` here; the aggregator counts such cases, it never drops them silently.

- Surface S(X): the voxels of X with a 6-neighbour outside X; voxels outside the image count as background,
  so a tumour touching the image edge has surface there.
- ASSD and RMSD are the pooled (Heimann / LiTS) form: every surface voxel of A and of B contributes one
  distance, and the mean is over |S(A)| + |S(B)|. This is not the mean of the two directed means (medpy).
- Empty masks: both empty gives Dice 100, VOE 0, RVD 0, ASSD 0, RMSD 0; exactly one empty gives Dice 0,
  VOE 100 and undefined ASSD/RMSD; RVD is undefined whenever A is empty.

For speed, everything is computed in the tight boxes of A ∪ B (boxes.py: split at empty slabs, so scattered
false positives do not make the box the whole image), each padded by one background voxel on every side
before the erosion that finds the surfaces. This is exact: every surface voxel lies in a box, and the
padding stands for the background outside the box (or outside the image). The nearest-surface distances are
exact Euclidean distances in float64 mm, found with a k-d tree over the surface voxel positions (scaled by
the spacing). It gives the same numbers as scipy.ndimage.distance_transform_edt(~S, sampling=spacing)
(the tests check both against a brute-force minimum) but costs O(n log n) in the surface voxels instead of
O(box volume), which matters for big tumours (benchmarks/RESULTS.md). MONAI made the same choice on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from mpliver.evaluation.boxes import foreground_boxes, padded_crop
from mpliver.evaluation.lesions import detection_scores, lesion_counts

NAN = float("nan")


def _check_pair(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None = None) -> tuple:
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape:
        raise ValueError(f"reference and prediction shapes differ: {ref.shape} vs {pred.shape}")
    if spacing is None:
        return ref, pred, None
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.size != ref.ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be {ref.ndim} positive numbers, got {list(spacing)}")
    return ref, pred, sp


def overlap_counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(|A|, |B|, |A∩B|) in voxels."""
    ref, pred, _ = _check_pair(ref, pred)
    return int(np.count_nonzero(ref)), int(np.count_nonzero(pred)), int(np.count_nonzero(ref & pred))


def dice_from_counts(n_ref: int, n_pred: int, n_inter: int) -> float:
    """2|A∩B| / (|A| + |B|) in %; 100 when both masks are empty."""
    total = n_ref + n_pred
    return 100.0 if total == 0 else 100.0 * 2.0 * n_inter / total


def voe_from_counts(n_ref: int, n_pred: int, n_inter: int) -> float:
    """1 − |A∩B| / |A∪B| in %; 0 when both masks are empty."""
    union = n_ref + n_pred - n_inter
    return 0.0 if union == 0 else 100.0 * (1.0 - n_inter / union)


def rvd_from_counts(n_ref: int, n_pred: int) -> float:
    """(|B| − |A|) / |A| in % (signed); 0 when both are empty, undefined (nan) when only A is empty."""
    if n_ref == 0:
        return 0.0 if n_pred == 0 else NAN
    return 100.0 * (n_pred - n_ref) / n_ref


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Dice per case (DPC term) in %."""
    return dice_from_counts(*overlap_counts(ref, pred))


def voe(ref: np.ndarray, pred: np.ndarray) -> float:
    """Volumetric overlap error in %."""
    return voe_from_counts(*overlap_counts(ref, pred))


def rvd(ref: np.ndarray, pred: np.ndarray) -> float:
    """Relative volume difference in % (signed; positive = over-segmentation)."""
    n_ref, n_pred, _ = overlap_counts(ref, pred)
    return rvd_from_counts(n_ref, n_pred)


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """S(X): voxels of `mask` with a 6-neighbour outside it (the image border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def _surface_points(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices (n, ndim) of S(A) and S(B), found box by box in A ∪ B."""
    pts_ref, pts_pred = [], []
    for box in foreground_boxes(ref | pred):
        offset = np.array([sl.start - 1 for sl in box])  # -1: the padding voxel
        pts_ref.append(np.argwhere(surface_voxels(padded_crop(ref, box))) + offset)
        pts_pred.append(np.argwhere(surface_voxels(padded_crop(pred, box))) + offset)
    empty = np.zeros((0, ref.ndim), dtype=np.intp)
    return (np.concatenate(pts_ref) if pts_ref else empty), (np.concatenate(pts_pred) if pts_pred else empty)


def _nearest_distances(pts_ref: np.ndarray, pts_pred: np.ndarray, sp: np.ndarray) -> tuple:
    p_ref = pts_ref.astype(np.float64) * sp
    p_pred = pts_pred.astype(np.float64) * sp
    d_ref_to_pred = np.asarray(cKDTree(p_pred).query(p_ref, k=1, workers=-1)[0], dtype=np.float64)
    d_pred_to_ref = np.asarray(cKDTree(p_ref).query(p_pred, k=1, workers=-1)[0], dtype=np.float64)
    return d_ref_to_pred, d_pred_to_ref


def surface_distances(
    ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm, float64) from each voxel of S(A) to S(B), and from each voxel of S(B) to S(A).

    Raises ValueError when either mask is empty (the distances are then undefined).
    """
    ref, pred, sp = _check_pair(ref, pred, spacing)
    pts_ref, pts_pred = _surface_points(ref, pred)
    if not len(pts_ref) or not len(pts_pred):
        raise ValueError("surface distances are undefined when a mask is empty")
    return _nearest_distances(pts_ref, pts_pred, sp)


def _pooled(d_ab: np.ndarray, d_ba: np.ndarray) -> tuple[float, float]:
    n = d_ab.size + d_ba.size
    assd = (float(d_ab.sum()) + float(d_ba.sum())) / n
    rmsd = math.sqrt((float(np.dot(d_ab, d_ab)) + float(np.dot(d_ba, d_ba))) / n)
    return assd, rmsd


def assd_rmsd(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """Pooled average symmetric surface distance and RMS surface distance (mm).

    (0, 0) when both masks are empty, (nan, nan) when exactly one is.
    """
    ref, pred, sp = _check_pair(ref, pred, spacing)
    has_ref, has_pred = bool(ref.any()), bool(pred.any())
    if not has_ref and not has_pred:
        return 0.0, 0.0
    if has_ref != has_pred:
        return NAN, NAN
    return _pooled(*surface_distances(ref, pred, sp))


def assd(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """Pooled ASSD in mm (see `assd_rmsd`)."""
    return assd_rmsd(ref, pred, spacing)[0]


def rmsd(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """Pooled RMS symmetric surface distance in mm (see `assd_rmsd`)."""
    return assd_rmsd(ref, pred, spacing)[1]


def case_metrics(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> dict[str, float | int]:
    """Every per-case value of docs/method.md §5 for one case: overlap, volume, surface and lesion detection.

    Keys: dice, voe, rvd (%), assd, rmsd (mm), lesion_recall, lesion_precision, lesion_f1 (%), and the
    counts ref_voxels, pred_voxels, intersection_voxels (needed for the pooled DG), n_ref_lesions,
    n_pred_lesions, n_ref_detected, n_pred_hits. Undefined values are nan.
    """
    ref, pred, sp = _check_pair(ref, pred, spacing)
    # One pass over the boxes of A ∪ B collects everything (see boxes.py for why this is exact).
    counts = np.zeros(3, dtype=np.int64)  # |A|, |B|, |A∩B|
    lesions = np.zeros(4, dtype=np.int64)
    pts_ref, pts_pred = [], []
    for box in foreground_boxes(ref | pred):
        a, b = padded_crop(ref, box), padded_crop(pred, box)
        counts += (np.count_nonzero(a), np.count_nonzero(b), np.count_nonzero(a & b))
        lesions += lesion_counts(a, b)
        offset = np.array([sl.start - 1 for sl in box])
        pts_ref.append(np.argwhere(surface_voxels(a)) + offset)
        pts_pred.append(np.argwhere(surface_voxels(b)) + offset)
    n_ref, n_pred, n_inter = (int(c) for c in counts)
    if n_ref == 0 and n_pred == 0:
        assd_mm, rmsd_mm = 0.0, 0.0
    elif n_ref == 0 or n_pred == 0:
        assd_mm, rmsd_mm = NAN, NAN
    else:
        assd_mm, rmsd_mm = _pooled(*_nearest_distances(np.concatenate(pts_ref), np.concatenate(pts_pred), sp))
    out: dict[str, float | int] = {
        "dice": dice_from_counts(n_ref, n_pred, n_inter),
        "voe": voe_from_counts(n_ref, n_pred, n_inter),
        "rvd": rvd_from_counts(n_ref, n_pred),
        "assd": assd_mm,
        "rmsd": rmsd_mm,
    }
    out.update(detection_scores(*(int(x) for x in lesions)))
    out.update({"ref_voxels": n_ref, "pred_voxels": n_pred, "intersection_voxels": n_inter})
    return out
