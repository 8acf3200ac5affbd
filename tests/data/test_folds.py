"""Type-stratified folds: every type spread evenly over the folds, fold sizes within one, deterministic."""

from __future__ import annotations

from collections import Counter

import pytest

from mpliver.data.folds import stratified_folds

PAPER = {"cyst": 36, "FNH": 20, "HEM": 25, "HCC": 26, "METS": 14}  # the paper's 121 cases


def _cases(composition):
    return {f"case_{t}_{i:03d}": t for t, n in composition.items() for i in range(n)}


@pytest.mark.parametrize("num_folds", [2, 3, 5])
def test_each_type_spread_evenly(num_folds):
    cases = _cases(PAPER)
    folds = stratified_folds(cases, num_folds=num_folds, seed=0)
    assert sorted(folds) == sorted(cases) and set(folds.values()) == set(range(num_folds))
    for ttype, n in PAPER.items():
        per_fold = Counter(folds[c] for c, t in cases.items() if t == ttype)
        counts = [per_fold.get(f, 0) for f in range(num_folds)]
        assert sum(counts) == n and max(counts) - min(counts) <= 1, (ttype, counts)
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_deterministic_and_seed_dependent():
    cases = _cases(PAPER)
    a = stratified_folds(cases, 5, seed=3)
    assert a == stratified_folds(
        dict(reversed(list(cases.items()))), 5, seed=3
    )  # input order does not matter
    assert a != stratified_folds(cases, 5, seed=4)


def test_untyped_cases_and_bad_fold_count():
    folds = stratified_folds({"a": None, "b": None, "c": "HCC", "d": None}, num_folds=2)
    assert Counter(folds.values()) == Counter({0: 2, 1: 2})
    with pytest.raises(ValueError):
        stratified_folds({"a": "HCC"}, num_folds=1)
