"""Tables over training seeds, with the paper's numbers beside ours and a verdict line per paper claim.

Every number of ours is the mean over seeds of the per-seed value; beside it stand the SD over seeds (the
training spread) and the SD over cases (mean over seeds of the per-seed SD over cases). Files in OUT/SET:
`seed_table1` (six metrics), `seed_dpc` (DPC of each seed), `seed_table2` (DPC per tumour type),
`seed_comparison` (paired differences, and whether each counts), `claims.md`, `seed_tables.md` (all of them)
and `seeds.json`. `paper_side_by_side` gives the same Markdown for a single-seed set run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mpliver.errors import RESEARCH_NOTICE
from mpliver.evaluation.aggregate import mean_sd
from mpliver.evaluation.claims import describe, judge
from mpliver.evaluation.paper_numbers import (
    CLAIMS,
    PAPER_ROWS,
    paper_difference,
    paper_metric,
    paper_type_dpc,
)
from mpliver.evaluation.tables import SIX_METRICS, csv_text, format_number, markdown_table
from mpliver.io.atomic import write_json_atomic, write_text_atomic
from mpliver.io.labels import type_order

if TYPE_CHECKING:
    from mpliver.experiments.crossval import CrossvalResult
    from mpliver.experiments.seeds import SeededResult
    from mpliver.experiments.sets import ExperimentSet

Runs = Mapping[int, Mapping[str, "CrossvalResult"]]  # seed -> row -> result


def over_seeds(summaries: Sequence[Mapping[str, Any]], key: str) -> dict[str, float | None]:
    """Mean over seeds, SD over seeds, and SD over cases (mean of the seeds' SDs) of one summary metric."""
    mean, seed_sd, _ = mean_sd(s.get(key) for s in summaries)
    case_sd = mean_sd(s.get(f"{key}_sd") for s in summaries)[0]
    return {"mean": mean, "seed_sd": seed_sd, "case_sd": case_sd, "n_seeds": len(summaries)}


def _cell(stats: Mapping[str, float | None], case_sd: bool = True) -> str:
    text = format_number(stats["mean"])
    if stats["mean"] is None:
        return text
    inner = [format_number(stats["seed_sd"]) if stats["seed_sd"] is not None else "–"]
    if case_sd:
        inner.append(format_number(stats["case_sd"]))
    return f"{text} ({'; '.join(inner)})"


def _rows(exp: ExperimentSet, runs: Runs) -> list[str]:
    return [r.name for r in exp.rows if any(r.name in by_row for by_row in runs.values())]


def _seeds_of(runs: Runs, row: str) -> list[int]:
    return [s for s in sorted(runs) if row in runs[s]]


def _dpc_by_case(result: CrossvalResult) -> dict[str, float]:
    return {r["case"]: float(r["dice"]) for r in result.records}


def build_tables(exp: ExperimentSet, runs: Runs) -> dict[str, tuple[str, str]]:
    """{stem: (Markdown, CSV)} of the tables over seeds, and `claims` (Markdown lines, CSV)."""
    names = _rows(exp, runs)
    seeds = sorted(runs)
    out: dict[str, tuple[str, str]] = {}

    header1, csv_header1, rows1, csv_rows1 = ["method", "seeds", "n"], ["method", "seeds", "n"], [], []
    for key, label in SIX_METRICS:
        header1 += [f"{label} mean (SD seeds; SD cases)", f"paper {label}"]
        csv_header1 += [key, f"{key}_sd_seeds", f"{key}_sd_cases", f"{key}_paper"]
    for n in names:
        summaries = [runs[s][n].summary for s in _seeds_of(runs, n)]
        cases = sorted({int(s.get("n_cases") or 0) for s in summaries})
        row, csv_row = [n, len(summaries), "/".join(map(str, cases))], [n, len(summaries), cases[0]]
        for key, _ in SIX_METRICS:
            st = over_seeds(summaries, key)
            row += [_cell(st, case_sd=key != "dg"), format_number(paper_metric(n, key))]
            case_sd = None if key == "dg" else st["case_sd"]
            csv_row += [st["mean"], st["seed_sd"], case_sd, paper_metric(n, key)]
        rows1.append(row)
        csv_rows1.append(csv_row)
    out["seed_table1"] = (markdown_table(header1, rows1), csv_text(csv_header1, csv_rows1))

    header_d = ["method", "paper DPC", "source"] + [f"seed {s}" for s in seeds]
    header_d += ["mean over seeds", "SD over seeds", "SD over cases"]
    rows_d = []
    for n in names:
        st = over_seeds([runs[s][n].summary for s in _seeds_of(runs, n)], "dpc")
        per_seed = [runs[s][n].summary.get("dpc") if n in runs[s] else None for s in seeds]
        source = PAPER_ROWS[n].source if n in PAPER_ROWS else "–"
        rows_d.append([n, paper_metric(n), source] + per_seed + [st["mean"], st["seed_sd"], st["case_sd"]])
    out["seed_dpc"] = (markdown_table(header_d, [_fmt_row(r, 1) for r in rows_d]), csv_text(header_d, rows_d))

    seen = {t for n in names for s in _seeds_of(runs, n) for t in runs[s][n].by_type}
    types = type_order(seen)
    header2, rows2, csv_rows2 = ["method"], [], []
    for t in types:
        header2 += [f"{t} (SD seeds; SD cases)", f"paper {t}"]
    for n in names:
        row = [n]
        for t in types:
            summaries = [runs[s][n].by_type[t] for s in _seeds_of(runs, n) if t in runs[s][n].by_type]
            st = over_seeds(summaries, "dpc")
            cases = max((int(x.get("n_cases") or 0) for x in summaries), default=0)
            row += [f"{_cell(st)} n={cases}", format_number(paper_type_dpc(n, t))]
            csv_rows2.append([n, t, cases, st["mean"], st["seed_sd"], st["case_sd"], paper_type_dpc(n, t)])
        rows2.append(row)
    out["seed_table2"] = (
        markdown_table(header2, rows2),
        csv_text(["method", "tumor_type", "n", "dpc", "dpc_sd_seeds", "dpc_sd_cases", "dpc_paper"],
                 csv_rows2),
    )

    claims = {(c.lower, c.higher): c.label for c in CLAIMS if c.set == exp.name}
    pairs = exp.pairs  # every claim of the set is one of its pairs (tests/experiments/test_seeds.py)
    header_c = ["A", "B"] + [f"seed {s}" for s in seeds]
    header_c += ["mean diff B − A", "SD over seeds", "SD over cases", "cases", "p", "signs agree", "counts",
                 "paper diff"]
    rows_c, lines = [], {}
    for a, b in pairs:
        if a not in names or b not in names:
            continue
        both = [s for s in seeds if a in runs[s] and b in runs[s]]
        if not both:
            continue
        j = judge({s: _dpc_by_case(runs[s][a]) for s in both}, {s: _dpc_by_case(runs[s][b]) for s in both})
        paper = paper_difference(a, b)
        rows_c.append([a, b] + [j.seed_diffs.get(s) for s in seeds] + [
            j.mean_diff, j.seed_sd, j.case_sd, j.n_cases, j.p_value, "yes" if j.signs_agree else "no",
            "yes" if j.counts else "no", None if paper is None else paper[0]])
        if (a, b) in claims:
            lines[(a, b)] = "- " + describe(claims[(a, b)], j, None if paper is None else paper[0])
    md_c = markdown_table(header_c, [_fmt_row(r, 2, p_col=header_c.index("p")) for r in rows_c])
    out["seed_comparison"] = (md_c, csv_text(header_c, rows_c))
    none = "(no claim of the paper concerns the rows run)\n"
    ordered = [lines[p] for p in claims if p in lines]  # in the order of CLAIMS
    out["claims"] = ("\n".join(ordered) + "\n" if ordered else none, "")
    return out


def _fmt_row(row: list[Any], skip: int, p_col: int | None = None) -> list[Any]:
    out = []
    for i, v in enumerate(row):
        if i < skip or not (isinstance(v, float) or v is None):
            out.append(v)
        elif i == p_col and v is not None:
            out.append(f"{v:.3g}")
        else:
            out.append(format_number(v))
    return out


def paper_side_by_side(exp: ExperimentSet, runs: Runs) -> str:
    """Markdown of the tables over seeds and the claim lines (for one seed or several)."""
    t = build_tables(exp, runs)
    seeds = sorted(runs)
    one = ""
    if len(seeds) == 1:
        one = (" One seed measures no seed spread (its SD is '–'), so no claim holds beyond it here"
               + ("; `mpliver experiments ... --seeds 3` measures it." if exp.seeded else "."))
    return "\n".join([
        f"Training seeds: {', '.join(map(str, seeds))}. Our numbers are means over seeds; in brackets the SD "
        "over seeds and the SD over cases. The paper's numbers (121 cases, 5-fold CV, real CT) stand beside "
        f"them for the ordering, not for the level: the cohort here is synthetic.{one}",
        "",
        "### Metrics over seeds, the paper's beside them",
        "",
        t["seed_table1"][0],
        "### DPC (%) of each seed",
        "",
        t["seed_dpc"][0],
        "### DPC (%) per tumour type over seeds (paper: Table 2)",
        "",
        t["seed_table2"][0],
        "### Paired DPC differences over seeds",
        "",
        "A difference counts when its sign agrees across seeds and the paired test on the seed-averaged "
        "per-case DPC gives p < 0.05 (`counts`).",
        "",
        t["seed_comparison"][0],
        "### The paper's claims",
        "",
        t["claims"][0],
    ])


def write_seed_tables(result: SeededResult) -> None:
    """Write the tables over seeds, the claims and seeds.json into OUT/SET."""
    out = result.out_dir
    runs = {s: r.results for s, r in result.by_seed.items()}
    tables = build_tables(result.set, runs)
    for stem, (md, csv) in tables.items():
        write_text_atomic(out / f"{stem}.md", md)
        if csv:
            write_text_atomic(out / f"{stem}.csv", csv)
    doc = [f"# {result.set.title}: over training seeds", "",
           f"{RESEARCH_NOTICE} (synthetic or in-house data).", "",
           paper_side_by_side(result.set, runs)]
    write_text_atomic(out / "seed_tables.md", "\n".join(doc))
    write_json_atomic(out / "seeds.json", {
        "set": result.set.name,
        "seeds": result.seeds,
        "command": result.command,
        "rows": _rows(result.set, runs),
        "runs": {str(s): sorted(r) for s, r in runs.items()},
        "ran": [list(x) for x in result.ran],
        "skipped": [list(x) for x in result.skipped],
        "seconds": {str(s): {n: r.seconds for n, r in res.items()} for s, res in runs.items()},
    })
