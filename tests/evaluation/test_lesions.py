"""Lesion detection: 26-connected lesions, a hit is any overlap, the undefined rules of docs/method.md §5."""

import math

import numpy as np
import pytest

from mpliver.evaluation.lesions import label_lesions, lesion_detection
from mpliver.evaluation.metrics import case_metrics


def _two_lesions(shape=(12, 12, 8)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = np.zeros(shape, bool)
    first[1:4, 1:4, 1:4] = True
    second = np.zeros(shape, bool)
    second[7:10, 7:10, 3:6] = True
    return first | second, first, second


def test_missed_lesion_gives_recall_50():
    ref, first, _ = _two_lesions()
    m = lesion_detection(ref, first)
    assert (m["n_ref_lesions"], m["n_pred_lesions"], m["n_ref_detected"], m["n_pred_hits"]) == (2, 1, 1, 1)
    assert m["lesion_recall"] == pytest.approx(50.0)
    assert m["lesion_precision"] == pytest.approx(100.0)
    assert m["lesion_f1"] == pytest.approx(2 * 50 * 100 / 150)
    # The voxel metrics of the same case: one of two equal lesions found, Dice = 2·27 / (54 + 27).
    assert case_metrics(ref, first, (0.7, 0.9, 2.5))["dice"] == pytest.approx(100 * 54 / 81)


def test_any_overlap_is_a_hit_and_false_positives_lower_precision():
    ref, first, second = _two_lesions()
    pred = np.zeros_like(ref)
    pred[3, 3, 3] = True  # one voxel of the first lesion is enough
    pred[10, 0, 0] = True  # a false positive, away from both
    m = lesion_detection(ref, pred)
    assert m["lesion_recall"] == pytest.approx(50.0)
    assert m["lesion_precision"] == pytest.approx(50.0)
    assert m["lesion_f1"] == pytest.approx(50.0)


def test_lesions_are_26_connected():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner neighbours: one lesion
    mask[4, 4, 4] = True  # two voxels away on the diagonal: a second lesion
    assert label_lesions(mask)[1] == 2


def test_undefined_rules():
    ref, first, _ = _two_lesions()
    empty = np.zeros_like(ref)
    both = lesion_detection(empty, empty)
    assert math.isnan(both["lesion_recall"]) and math.isnan(both["lesion_precision"])
    assert math.isnan(both["lesion_f1"])
    no_pred = lesion_detection(ref, empty)  # every lesion missed
    assert no_pred["lesion_recall"] == 0.0 and math.isnan(no_pred["lesion_precision"])
    assert no_pred["lesion_f1"] == 0.0
    no_ref = lesion_detection(empty, first)  # only false positives
    assert math.isnan(no_ref["lesion_recall"]) and no_ref["lesion_precision"] == 0.0
    assert no_ref["lesion_f1"] == 0.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        lesion_detection(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 4), bool))
