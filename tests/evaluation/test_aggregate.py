"""Aggregation over cases: DPC mean vs pooled DG, SDs, undefined counts, per-type groups, paired tests."""

import math

import numpy as np
import pytest
from scipy import stats

from mpliver.evaluation.aggregate import (
    MetricAggregator,
    mean_sd,
    paired_comparison,
    pooled_dice,
    summarize,
    summarize_by_type,
)
from mpliver.evaluation.metrics import case_metrics

SPACING = (0.7, 0.9, 2.5)


def _record(case, ref, pred, tumor_type=""):
    return {"case": case, "tumor_type": tumor_type, **case_metrics(ref, pred, SPACING)}


def _cases():
    shape = (6, 6, 6)
    a1 = np.zeros(shape, bool)
    a1[2, 2, 2] = True  # case 1: one voxel, found exactly -> Dice 100
    a2 = np.zeros(shape, bool)
    a2[1:4, 1:4, 1] = True  # case 2: 9 voxels, 3 of them predicted -> Dice 2*3/12 = 50
    b2 = np.zeros(shape, bool)
    b2[1:4, 1, 1] = True
    a3 = np.zeros(shape, bool)
    a3[0:2, 0:2, 0:2] = True  # case 3: 8 voxels, nothing predicted -> Dice 0, ASSD undefined
    return [_record("c1", a1, a1.copy(), "HCC"), _record("c2", a2, b2, "HCC"),
            _record("c3", a3, np.zeros(shape, bool), "cyst")]


def test_dg_pooled_differs_from_dpc_mean_by_hand():
    records = _cases()[:2]
    s = summarize(records)
    assert s["dpc"] == pytest.approx((100 + 50) / 2)
    assert s["dg"] == pytest.approx(100 * 2 * (1 + 3) / ((1 + 1) + (9 + 3)))  # 57.14 %
    assert s["dpc_sd"] == pytest.approx(math.sqrt(2 * 25.0**2 / 1))  # sample SD of (100, 50)
    assert "dg_sd" not in s


def test_undefined_values_are_counted_not_dropped_silently():
    s = summarize(_cases())
    assert s["n_cases"] == 3
    assert s["assd_undefined"] == 1 and s["rmsd_undefined"] == 1
    assert s["dpc_undefined"] == 0 and s["voe_undefined"] == 0
    assert s["dpc"] == pytest.approx(50.0)  # (100 + 50 + 0) / 3: the empty prediction counts as Dice 0
    assert s["lesion_precision_undefined"] == 1  # no predicted lesion in case 3
    assert s["lesion_recall"] == pytest.approx((100 + 100 + 0) / 3)
    for key in ("dpc", "dg", "voe", "rvd", "assd", "rmsd"):
        assert isinstance(s[key], float)


def test_mean_sd_edge_cases():
    assert mean_sd([]) == (None, None, 0)
    assert mean_sd([float("nan"), None]) == (None, None, 2)
    assert mean_sd([3.0, float("nan")]) == (3.0, None, 1)
    assert pooled_dice([]) is None


def test_summarize_by_type_groups_and_puts_unknown_last():
    records = _cases() + [{**_cases()[0], "case": "c4", "tumor_type": ""}]
    by_type = summarize_by_type(records)
    assert list(by_type) == ["HCC", "cyst", "unknown"]
    assert by_type["HCC"]["n_cases"] == 2 and by_type["HCC"]["dpc"] == pytest.approx(75.0)
    assert by_type["cyst"]["dpc"] == 0.0


def test_aggregator_accumulates():
    agg = MetricAggregator()
    agg.extend(_cases())
    assert len(agg) == 3 and agg.aggregate()["dpc"] == pytest.approx(50.0)
    assert set(agg.aggregate_by_type()) == {"HCC", "cyst"}
    agg.reset()
    assert len(agg) == 0
    with pytest.raises(ValueError, match="case"):
        agg.append({"dice": 1.0})


def test_paired_comparison_against_hand_values():
    a = [{"case": f"c{i}", "dice": 50.0} for i in range(5)]
    b = [{"case": f"c{i}", "dice": 50.0 + d} for i, d in enumerate([1.0, 2.0, 3.0, 4.0, 5.0])]
    c = paired_comparison(a, b)
    assert c["n_pairs"] == 5 and c["mean_diff"] == pytest.approx(3.0)
    assert c["sd_diff"] == pytest.approx(math.sqrt(2.5))
    # Exact two-sided Wilcoxon signed-rank: all 5 differences positive -> p = 2 / 2^5.
    assert c["p_wilcoxon"] == pytest.approx(2 / 32)
    t = 3.0 / (math.sqrt(2.5) / math.sqrt(5))
    assert c["p_ttest"] == pytest.approx(2 * stats.t.sf(t, df=4))
    assert c["test"] == "wilcoxon" and c["p_value"] == c["p_wilcoxon"]


def test_paired_comparison_degenerate_cases():
    a = [{"case": f"c{i}", "dice": 60.0} for i in range(4)]
    same = paired_comparison(a, a)
    assert same["mean_diff"] == 0.0 and same["p_wilcoxon"] == 1.0 and same["p_ttest"] == 1.0
    shifted = paired_comparison(a, [{"case": r["case"], "dice": 70.0} for r in a])
    assert shifted["p_ttest"] is None  # constant shift: no variance, t undefined
    assert shifted["p_wilcoxon"] == pytest.approx(2 / 16) and shifted["test"] == "wilcoxon"
    # Only the common cases with both values defined are paired; the others are counted.
    b = [{"case": "c0", "dice": float("nan")}, {"case": "c1", "dice": 61.0}, {"case": "zz", "dice": 1.0}]
    partial = paired_comparison(a, b)
    assert partial["n_pairs"] == 1 and partial["n_undefined"] == 1 and partial["mean_diff"] == 1.0
    assert partial["n_only_a"] == 2 and partial["n_only_b"] == 1  # c2, c3 only in a; zz only in b
    none = paired_comparison(a, [])
    assert none["n_pairs"] == 0 and none["p_value"] is None and none["test"] == "none"
