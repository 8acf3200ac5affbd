"""Lesion-wise detection (docs/method.md §5, beyond the paper): 26-connected components; a hit is any overlap.

Recall = reference lesions touched by the prediction / reference lesions (undefined with no reference
lesion). Precision = predicted lesions touching the reference / predicted lesions (undefined with no
predicted lesion). F1 = 2PR / (P + R), 0 when P = R = 0. When exactly one of P and R is undefined, the other
is necessarily 0 (lesions on one side only, all of them missed or false), and F1 is 0: the case is a
detection failure, not an undefined one. F1 is undefined only when neither side has a lesion.
All three are in %.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpliver.evaluation.boxes import foreground_boxes

NAN = float("nan")


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a 3-D mask: (label image with 1..n, n)."""
    mask = np.asarray(mask, dtype=bool)
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)


def _touched(labels: np.ndarray, other: np.ndarray) -> int:
    """How many distinct components of `labels` contain at least one voxel of `other`."""
    hit = np.unique(labels[other])
    return int(np.count_nonzero(hit))


def lesion_counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(reference lesions, predicted lesions, reference lesions hit, predicted lesions hitting) of one box."""
    ref_labels, n_ref = label_lesions(ref)
    pred_labels, n_pred = label_lesions(pred)
    return n_ref, n_pred, _touched(ref_labels, pred), _touched(pred_labels, ref)


def detection_scores(n_ref: int, n_pred: int, detected: int, hits: int) -> dict[str, float | int]:
    """Recall, precision and F1 (%) from the lesion counts, with the undefined rules of this module."""
    recall = 100.0 * detected / n_ref if n_ref else NAN
    precision = 100.0 * hits / n_pred if n_pred else NAN
    if n_ref == 0 and n_pred == 0:
        f1 = NAN
    elif n_ref == 0 or n_pred == 0:
        f1 = 0.0
    else:
        f1 = 0.0 if recall + precision == 0 else 2.0 * recall * precision / (recall + precision)
    return {
        "lesion_recall": recall,
        "lesion_precision": precision,
        "lesion_f1": f1,
        "n_ref_lesions": n_ref,
        "n_pred_lesions": n_pred,
        "n_ref_detected": detected,
        "n_pred_hits": hits,
    }


def lesion_detection(ref: np.ndarray, pred: np.ndarray) -> dict[str, float | int]:
    """Lesion-wise recall, precision and F1 (%) of one case, with the counts they come from.

    Keys: lesion_recall, lesion_precision, lesion_f1, n_ref_lesions, n_pred_lesions, n_ref_detected (reference
    lesions hit by the prediction), n_pred_hits (predicted lesions that hit the reference).
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape:
        raise ValueError(f"reference and prediction shapes differ: {ref.shape} vs {pred.shape}")
    # A lesion and everything it touches lie in one box of A ∪ B (see boxes.py): count box by box.
    totals = np.zeros(4, dtype=np.int64)
    for box in foreground_boxes(ref | pred):
        totals += lesion_counts(ref[box], pred[box])
    return detection_scores(*(int(t) for t in totals))
