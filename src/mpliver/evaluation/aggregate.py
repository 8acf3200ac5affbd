"""Reductions over per-case records (the dicts of `metrics.case_metrics`, plus `case` and `tumor_type`).

As in MONAI's metric classes, the math lives in pure functions and a thin `MetricAggregator` accumulates.
Every mean carries `<key>_sd` (sample SD, ddof=1; None with fewer than two defined values) and
`<key>_undefined` (how many cases had no value), so an undefined value is never dropped silently.
DG is pooled over cases (2 Σ|A∩B| / Σ(|A|+|B|)) and has no SD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mpliver.evaluation.metrics import dice_from_counts

# summary key -> per-case record key; the order is the order of the summary and of the tables.
MEAN_KEYS: dict[str, str] = {
    "dpc": "dice",
    "voe": "voe",
    "rvd": "rvd",
    "assd": "assd",
    "rmsd": "rmsd",
    "lesion_recall": "lesion_recall",
    "lesion_precision": "lesion_precision",
    "lesion_f1": "lesion_f1",
}
UNKNOWN_TYPE = "unknown"


def _value(record: Mapping[str, Any], key: str) -> float:
    v = record.get(key)
    if v is None or v == "":
        return math.nan
    return float(v)


def mean_sd(values: Iterable[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample SD, number of undefined values) of values where nan/None means undefined."""
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    defined = arr[np.isfinite(arr)]
    undefined = int(arr.size - defined.size)
    mean = float(defined.mean()) if defined.size else None
    sd = float(defined.std(ddof=1)) if defined.size >= 2 else None
    return mean, sd, undefined


def pooled_dice(records: Sequence[Mapping[str, Any]]) -> float | None:
    """DG in %: 2 Σ|A∩B| / Σ(|A|+|B|) over cases; 100 when every mask is empty, None with no case."""
    if not records:
        return None
    return dice_from_counts(sum(int(r["ref_voxels"]) for r in records),
                            sum(int(r["pred_voxels"]) for r in records),
                            sum(int(r["intersection_voxels"]) for r in records))


def volume_ratio(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Predicted over reference volume, pooled over cases: Σ|A| / Σ|B| (volume calibration, issue 13); None
    when no case has a reference voxel or the records carry no voxel counts."""
    if not records or any("pred_voxels" not in r or "ref_voxels" not in r for r in records):
        return None
    ref = sum(int(r["ref_voxels"]) for r in records)
    return None if ref == 0 else sum(int(r["pred_voxels"]) for r in records) / ref


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Flat summary: dpc, dg, voe, rvd, assd, rmsd and lesion_* means with `_sd` and `_undefined`, the
    pooled predicted / reference volume `vol_ratio`, n_cases."""
    out: dict[str, Any] = {}
    for key, rec_key in MEAN_KEYS.items():
        mean, sd, undefined = mean_sd(_value(r, rec_key) for r in records)
        out[key] = mean
        out[f"{key}_sd"] = sd
        out[f"{key}_undefined"] = undefined
        if key == "dpc":
            out["dg"] = pooled_dice(records)
    out["vol_ratio"] = volume_ratio(records)
    out["n_cases"] = len(records)
    return out


def summarize_by_type(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tumour type -> `summarize` of its cases; cases without a type go under 'unknown' (sorted last)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(r.get("tumor_type") or UNKNOWN_TYPE, []).append(r)
    order = sorted(groups, key=lambda t: (t == UNKNOWN_TYPE, t))
    return {t: summarize(groups[t]) for t in order}


def paired_comparison(
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    key: str = "dice",
) -> dict[str, Any]:
    """Compare method B with method A on the cases both evaluated, by the per-case value `key`.

    Returns n_pairs, n_undefined (common cases where either value is undefined), n_only_a / n_only_b (cases
    only one method evaluated: never paired, but counted), mean_diff and sd_diff of
    B − A, p_wilcoxon (Wilcoxon signed-rank), p_ttest (paired t-test), and p_value/test: Wilcoxon's where it
    is defined, else the t-test's. All differences zero gives p = 1 for both; a constant non-zero shift makes
    the t-test degenerate (None) while Wilcoxon still answers.
    """
    from scipy import stats  # lazy: scipy.stats is slow to import, and few callers need it

    by_case_a = {r["case"]: _value(r, key) for r in records_a}
    by_case_b = {r["case"]: _value(r, key) for r in records_b}
    common = sorted(set(by_case_a) & set(by_case_b))
    pairs = [(by_case_a[c], by_case_b[c]) for c in common]
    defined = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    diffs = np.array([b - a for a, b in defined], dtype=np.float64)
    out: dict[str, Any] = {
        "key": key,
        "n_pairs": int(diffs.size),
        "n_undefined": len(pairs) - len(defined),
        "n_only_a": len(set(by_case_a) - set(by_case_b)),
        "n_only_b": len(set(by_case_b) - set(by_case_a)),
        "mean_diff": float(diffs.mean()) if diffs.size else None,
        "sd_diff": float(diffs.std(ddof=1)) if diffs.size >= 2 else None,
        "p_wilcoxon": None,
        "p_ttest": None,
    }
    if diffs.size and not np.any(diffs):
        out["p_wilcoxon"] = out["p_ttest"] = 1.0
    elif diffs.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                p = float(stats.wilcoxon(diffs).pvalue)
                out["p_wilcoxon"] = p if math.isfinite(p) else None
            except ValueError:
                pass
            if diffs.size >= 2 and np.ptp(diffs) > 0:
                p = float(stats.ttest_rel([b for _, b in defined], [a for a, _ in defined]).pvalue)
                out["p_ttest"] = p if math.isfinite(p) else None
    if out["p_wilcoxon"] is not None:
        out["p_value"], out["test"] = out["p_wilcoxon"], "wilcoxon"
    elif out["p_ttest"] is not None:
        out["p_value"], out["test"] = out["p_ttest"], "paired t-test"
    else:
        out["p_value"], out["test"] = None, "none"
    return out


class MetricAggregator:
    """Accumulates per-case records and reduces them on demand (like MONAI's Cumulative metrics)."""

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []

    def append(self, record: Mapping[str, Any]) -> None:
        if "case" not in record:
            raise ValueError("a per-case record needs a 'case' key")
        self._records.append(dict(record))

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            self.append(r)

    def reset(self) -> None:
        self._records.clear()

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._records)

    def aggregate(self) -> dict[str, Any]:
        return summarize(self._records)

    def aggregate_by_type(self) -> dict[str, dict[str, Any]]:
        return summarize_by_type(self._records)

    def __len__(self) -> int:
        return len(self._records)
