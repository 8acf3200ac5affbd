"""The realism table of `mpliver inspect` (issue 13 item 4): per phase, the HU of aorta, portal vein and
liver, the lesion − liver contrast per tumour type and the noise SD, each measured over the cohort (median
over cases, with the 5th-95th percentile of cases) next to the range it should fall in (`reference`)."""

from __future__ import annotations

import math

import numpy as np

from mpliver.data.phantom.reference import NOISE_RANGE, lesion_range, structure_range
from mpliver.io.labels import TUMOR_TYPES

ROWS = (("aorta", "aorta_hu"), ("portal vein", "portal_vein_hu"), ("liver", "liver_hu"))


def _cell(values: list[float], ref) -> dict:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    cell: dict = {"cases": int(arr.size)}
    if arr.size:
        cell.update(median=float(np.median(arr)), p5=float(np.percentile(arr, 5)),
                    p95=float(np.percentile(arr, 95)))
    if ref is not None:
        cell.update(low=ref[0], high=ref[1], source=ref[2])
        if arr.size:
            cell["inside"] = bool(ref[0] <= cell["median"] <= ref[1])
    return cell


def realism_summary(rows: list[dict], phases: list[str]) -> dict[str, dict[str, dict]]:
    """{row name: {phase: cell}} from `stats.dataset_statistics` rows; a cell has the median over cases, the
    5th and 95th percentiles, the reference range and source, and whether the median lies inside it."""
    out: dict[str, dict[str, dict]] = {}

    def values(phase: str, key: str, kind: str | None = None) -> list[float]:
        picked = [r["phases"].get(phase) for r in rows if kind is None or r["tumor_type"] == kind]
        return [s[key] for s in picked if s is not None and (kind is None or s["lesion_voxels"] > 0)]

    for name, key in ROWS:
        out[f"{name} HU"] = {p: _cell(values(p, key), structure_range(p, key[:-3])) for p in phases}
    kinds = [t for t in TUMOR_TYPES if any(r["tumor_type"] == t for r in rows)]
    for kind in kinds:
        out[f"{kind} Δ"] = {p: _cell(values(p, "delta_hu", kind), lesion_range(kind, p)) for p in phases}
    out["noise SD"] = {p: _cell(values(p, "noise_sd"), NOISE_RANGE) for p in phases}
    return out


def all_inside(summary: dict[str, dict[str, dict]]) -> bool:
    """True when every cell that has both a measurement and a reference range lies inside it."""
    return all(c.get("inside", True) for cells in summary.values() for c in cells.values())


def realism_rows(summary: dict[str, dict[str, dict]], phases: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the realism table as text cells: one row per figure, per phase the measured median
    [5th-95th percentile of cases], the reference range and a mark (ok inside, OUT outside, - no reference
    or no measurement)."""
    header = ["figure"] + [col for p in phases for col in (f"{p} measured", f"{p} range", "")]
    rows = []
    for name, cells in summary.items():
        row = [name]
        for p in phases:
            c = cells[p]
            measured = (f"{c['median']:.0f} [{c['p5']:.0f}, {c['p95']:.0f}]" if "median" in c else "-")
            ref = f"{c['low']:.0f}..{c['high']:.0f}" if "low" in c else "-"
            mark = "-" if "inside" not in c else ("ok" if c["inside"] else "OUT")
            row += [measured, ref, mark]
        rows.append(row)
    return header, rows


def source_rows(summary: dict[str, dict[str, dict]], phases: list[str]) -> list[tuple[str, str, str]]:
    """(figure, phase, source) of every reference range shown (docs/phantom.md lists the references)."""
    return [(name, p, cells[p]["source"]) for name, cells in summary.items() for p in phases
            if "source" in cells[p]]
