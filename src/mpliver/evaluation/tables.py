"""Markdown and CSV renderers for the paper-style tables. Inputs are plain dicts and lists, so that
`evaluate`, `crossval` and `experiments` share them.

- Table 1: one row per method (or tumour type), the six metrics as mean ± SD, with the count of undefined
  cases beside a mean when there are any. Input: {row label: flat summary (aggregate.summarize)}.
- Table 2: DPC per tumour type. Input: {method: {tumour type: flat summary}} (aggregate.summarize_by_type).
- Paired comparisons: one row per (method A, method B) pair. Input: list of dicts from
  aggregate.paired_comparison with `method_a`/`method_b` added.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

SIX_METRICS: tuple[tuple[str, str], ...] = (
    ("dpc", "DPC (%)"),
    ("dg", "DG (%)"),
    ("voe", "VOE (%)"),
    ("rvd", "RVD (%)"),
    ("assd", "ASSD (mm)"),
    ("rmsd", "RMSD (mm)"),
)
VOLUME_TITLE = "pred/ref volume"
LESION_METRICS: tuple[tuple[str, str], ...] = (
    ("lesion_recall", "lesion recall (%)"),
    ("lesion_precision", "lesion precision (%)"),
    ("lesion_f1", "lesion F1 (%)"),
)


def format_number(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.{digits}f}"


def format_mean_sd(summary: Mapping[str, Any], key: str, digits: int = 2) -> str:
    """'mean ± SD' for `key` of a flat summary, '(k undefined)' appended when k > 0; DG has no SD."""
    mean = summary.get(key)
    text = format_number(mean, digits)
    if f"{key}_sd" in summary and mean is not None:
        sd = summary.get(f"{key}_sd")
        text += f" ± {format_number(sd, digits)}" if sd is not None else ""
    undefined = int(summary.get(f"{key}_undefined") or 0)
    if undefined:
        text += f" ({undefined} undefined)"
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (the first column left-aligned, the others right-aligned)."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text; None and nan become empty cells."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and v != v) else v for v in row])
    return buf.getvalue()


def _metric_columns(metrics: Sequence[tuple[str, str]]) -> list[str]:
    cols = []
    for key, _ in metrics:
        cols.append(key)
        if key != "dg":
            cols += [f"{key}_sd", f"{key}_undefined"]
    return cols


def table1_markdown(rows: Mapping[str, Mapping[str, Any]], label: str = "method",
                    metrics: Sequence[tuple[str, str]] = SIX_METRICS, digits: int = 2) -> str:
    """Table-1 style: rows (methods, or tumour types) × metrics as mean ± SD, plus the number of cases, and
    the pooled predicted / reference volume when the summaries carry it (volume calibration next to DPC)."""
    header = [label, "n"] + [title for _, title in metrics]
    body = [[name, s.get("n_cases", "")] + [format_mean_sd(s, key, digits) for key, _ in metrics]
            for name, s in rows.items()]
    if any("vol_ratio" in s for s in rows.values()):
        header.append(VOLUME_TITLE)
        for row, s in zip(body, rows.values(), strict=True):
            row.append(format_number(s.get("vol_ratio"), digits))
    return markdown_table(header, body)


def table1_csv(rows: Mapping[str, Mapping[str, Any]], label: str = "method",
               metrics: Sequence[tuple[str, str]] = SIX_METRICS) -> str:
    """Table-1 style as numbers: label, n_cases, then `key, key_sd, key_undefined` per metric (DG alone)."""
    cols = _metric_columns(metrics)
    body = [[name, s.get("n_cases")] + [s.get(c) for c in cols] for name, s in rows.items()]
    return csv_text([label, "n_cases"] + cols, body)


def _types_of(per_type: Mapping[str, Mapping[str, Mapping[str, Any]]], types: Sequence[str] | None) -> list:
    if types is not None:
        return list(types)
    seen: list[str] = []
    for by_type in per_type.values():
        seen += [t for t in by_type if t not in seen]
    return seen


def table2_markdown(per_type: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    types: Sequence[str] | None = None, key: str = "dpc", digits: int = 2,
                    calibration: bool = False) -> str:
    """Table-2 style: methods × tumour types, each cell `key` (DPC by default) as mean ± SD (n). With
    `calibration`, each method gets two more rows: RVD (%) and the pooled predicted / reference volume."""
    cols = _types_of(per_type, types)
    body = []
    for method, by_type in per_type.items():
        row: list[Any] = [method]
        for t in cols:
            s = by_type.get(t)
            row.append("–" if s is None else f"{format_mean_sd(s, key, digits)} (n={s.get('n_cases', 0)})")
        body.append(row)
        if calibration:
            body.append([f"{method}: RVD (%)"] + ["–" if by_type.get(t) is None else
                                                   format_mean_sd(by_type[t], "rvd", digits) for t in cols])
            body.append([f"{method}: {VOLUME_TITLE}"] + ["–" if by_type.get(t) is None else
                                                        format_number(by_type[t].get("vol_ratio"), digits)
                                                        for t in cols])
    return markdown_table(["method"] + cols, body)


def table2_csv(per_type: Mapping[str, Mapping[str, Mapping[str, Any]]],
               types: Sequence[str] | None = None, key: str = "dpc") -> str:
    """Table-2 style in long form: method, tumor_type, n_cases, key, key_sd, key_undefined."""
    cols = _types_of(per_type, types)
    body = []
    for method, by_type in per_type.items():
        for t in cols:
            s = by_type.get(t)
            if s is not None:
                body.append([method, t, s.get("n_cases"), s.get(key), s.get(f"{key}_sd"),
                             s.get(f"{key}_undefined")])
    return csv_text(["method", "tumor_type", "n_cases", key, f"{key}_sd", f"{key}_undefined"], body)


_COMPARISON_COLS = ("method_a", "method_b", "key", "n_pairs", "n_undefined", "mean_diff", "sd_diff",
                    "p_wilcoxon", "p_ttest", "p_value", "test")


def comparison_markdown(comparisons: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """Paired comparisons: B − A mean difference ± SD and the p-value of the named test."""
    header = ["A", "B", "metric", "pairs", "mean diff B − A", "p", "test"]
    body = []
    for c in comparisons:
        diff = format_number(c.get("mean_diff"), digits)
        if c.get("sd_diff") is not None:
            diff += f" ± {format_number(c['sd_diff'], digits)}"
        p = c.get("p_value")
        body.append([c.get("method_a", "A"), c.get("method_b", "B"), c.get("key", ""), c.get("n_pairs", 0),
                     diff, "n/a" if p is None else f"{p:.3g}", c.get("test", "")])
    return markdown_table(header, body)


def comparison_csv(comparisons: Sequence[Mapping[str, Any]]) -> str:
    return csv_text(_COMPARISON_COLS, [[c.get(k) for k in _COMPARISON_COLS] for c in comparisons])
