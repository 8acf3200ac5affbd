"""The verdict on a paper claim "B > A" over seeds and cases, on hand-made results with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mpliver.evaluation.claims import HOLDS_BEYOND, HOLDS_WITHIN, REVERSED, describe, judge

CASES = [f"C{i:02d}" for i in range(12)]


def _seeded(base: dict[str, float], shifts: dict[int, float]) -> dict[int, dict[str, float]]:
    return {s: {c: v + shift for c, v in base.items()} for s, shift in shifts.items()}


def _base(offset: float = 0.0) -> dict[str, float]:
    return {c: 40.0 + 3.0 * i + offset for i, c in enumerate(CASES)}


def test_a_consistent_gain_on_every_case_and_seed_holds_beyond_the_spread():
    gains = {c: 2.0 + 0.5 * i for i, c in enumerate(CASES)}  # every case better, different amounts
    low = _seeded(_base(), {0: 0.0, 1: 1.0, 2: -1.0})
    high = {s: {c: low[s][c] + gains[c] + s for c in CASES} for s in low}
    j = judge(low, high)
    # d_s: the mean gain (4.75) plus the seed's own extra s
    assert j.seed_diffs == pytest.approx({0: 4.75, 1: 5.75, 2: 6.75})
    assert j.mean_diff == pytest.approx(5.75)
    assert j.seed_sd == pytest.approx(1.0)
    per_case = [gains[c] + 1.0 for c in CASES]  # seed-averaged per-case difference
    assert j.case_sd == pytest.approx(float(np.std(per_case, ddof=1)))
    assert j.p_value == pytest.approx(float(stats.wilcoxon(per_case).pvalue))
    assert j.n_cases == 12 and j.signs_agree and j.significant and j.counts
    assert j.verdict == HOLDS_BEYOND


def test_a_gain_that_one_seed_contradicts_holds_only_within_the_spread():
    low = _seeded(_base(), {0: 0.0, 1: 0.0, 2: 0.0})
    high = {0: {c: v + 6.0 for c, v in low[0].items()},
            1: {c: v + 5.0 for c, v in low[1].items()},
            2: {c: v - 1.0 for c, v in low[2].items()}}  # the third seed reverses it
    j = judge(low, high)
    assert j.mean_diff == pytest.approx(10.0 / 3)
    assert not j.signs_agree and j.significant  # every case's seed-averaged difference is +3.33
    assert not j.counts and j.verdict == HOLDS_WITHIN


def test_a_positive_mean_that_the_case_test_does_not_support_is_within_the_spread():
    noise = np.array([20.0, -20.0] * 6) * np.linspace(1, 2, 12)  # large, alternating: no consistent gain
    low = {0: _base(), 1: _base()}
    high = {s: {c: low[s][c] + 1.0 + float(noise[i]) for i, c in enumerate(CASES)} for s in low}
    j = judge(low, high)
    expected = 1.0 + float(noise.mean())
    assert j.mean_diff == pytest.approx(expected)
    assert expected > 0 and j.signs_agree and j.p_value > 0.05
    assert j.verdict == HOLDS_WITHIN


def test_a_lower_score_is_reversed_and_one_seed_never_agrees_across_seeds():
    low = {7: _base()}
    high = {7: {c: v - 2.0 - 0.1 * i for i, (c, v) in enumerate(_base().items())}}
    j = judge(low, high)
    assert j.mean_diff == pytest.approx(-2.0 - 0.1 * 5.5)
    assert j.verdict == REVERSED and j.seed_sd is None and not j.signs_agree and j.significant
    line = describe("add < SAM", j, paper_diff=3.79)
    assert line.startswith("**add < SAM**: reversed; DPC difference -2.55 (per seed -2.55; SD over seeds n/a")
    assert "paper +3.79" in line and "12 cases" in line and "one seed: no seed spread" in line
    # one seed and a clear gain on every case: still only within the spread (the seed spread is unmeasured)
    one = judge({0: _base()}, {0: {c: v + 5.0 + 0.1 * i for i, (c, v) in enumerate(_base().items())}})
    assert one.significant and not one.counts and one.verdict == HOLDS_WITHIN


def test_only_cases_defined_in_both_rows_and_every_seed_are_paired():
    low = {0: _base(), 1: _base()}
    high = {s: {c: v + 1.0 for c, v in _base().items()} for s in (0, 1)}
    low[1]["C00"] = float("nan")  # undefined in one seed: left out of every seed
    del high[0]["C01"]  # missing in one seed
    high[1]["C02"] = 1000.0  # would dominate if it were unpaired noise; it is paired and counted
    j = judge(low, high)
    assert j.n_cases == 10
    assert j.seed_diffs[0] == pytest.approx(1.0)
    assert j.seed_diffs[1] == pytest.approx((9 * 1.0 + (1000.0 - low[1]["C02"])) / 10)
    with pytest.raises(ValueError, match="no seed"):
        judge({0: _base()}, {1: _base()})


def test_equal_rows_hold_within_the_spread_without_an_ordering():
    j = judge({0: _base()}, {0: _base()})
    assert j.mean_diff == 0 and j.verdict == HOLDS_WITHIN and not j.counts and j.p_value == 1.0
