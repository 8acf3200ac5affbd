"""Type-stratified fold assignment, done once and stored in dataset.json, so every experiment shares it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def stratified_folds(
    case_types: Mapping[str, str | None], num_folds: int = 5, seed: int = 0
) -> dict[str, int]:
    """Assign each case a fold in [0, num_folds) so that every tumour type is spread evenly over folds.

    Cases are shuffled within each type (deterministically from `seed`) and dealt round-robin; the deal
    continues across types from where the previous type stopped, so fold sizes differ by at most one.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[str]] = {}
    for case in sorted(case_types):
        by_type.setdefault(case_types[case] or "unknown", []).append(case)
    folds: dict[str, int] = {}
    position = 0
    for ttype in sorted(by_type):
        members = list(by_type[ttype])
        rng.shuffle(members)
        for case in members:
            folds[case] = position % num_folds
            position += 1
    return {case: folds[case] for case in sorted(folds)}
