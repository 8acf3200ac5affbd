"""`mpliver report RUN_DIR`: figures of a cross-validation run (or of an experiment set) and an index page.

For a crossval run folder (it holds crossval.json) RUN/report/ receives:
- `overlay_CASE.png`: Fig.-3-style overlays (reference red, prediction blue) for the chosen cases (default:
  the best, median and worst DPC among cases with a reference tumour);
- `confidence_CASE.png`: URIM confidence maps of the same cases, where the run saved them (URIM models);
- `training_curves.png` from the folds' log.csv;
- `dpc_by_type.png`: DPC per tumour type with ± SD;
- `index.md` linking every figure that exists and holding Tables 1 and 2.
For an experiment set folder (experiment.json) it writes the per-type bars of every row, the training curves
of each row, `learning_curve.png` (validation Dice per epoch of every row, mean over folds), and an index
with the set's tables. For the folder of a seed-repeated set (seeds.json, `mpliver experiments --seeds`) it
writes the learning curve over every fold and seed, the per-type bars of the means over seeds, and an index
with the tables over seeds and the paper's claims.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.errors import RESEARCH_NOTICE, InputError
from mpliver.evaluation.curves import learning_curve_png
from mpliver.evaluation.evaluate import read_per_case_csv
from mpliver.evaluation.figures import (
    case_overlay_png,
    confidence_png,
    read_log_csv,
    training_curves_png,
    type_dpc_bars_png,
)
from mpliver.experiments.crossval import CONFIDENCE, CROSSVAL_JSON, EVALUATION, PREDICTIONS, prediction_path
from mpliver.experiments.seed_tables import over_seeds
from mpliver.experiments.seeds import SEEDS_JSON, seed_dir_name
from mpliver.io.atomic import check_writable, write_text_atomic
from mpliver.io.labels import type_order
from mpliver.io.layout import Dataset

REPORT_DIR = "report"
LEARNING_CURVE = "Learning curve: validation Dice (slices pooled) per epoch, mean over runs ± SD"
DISCLAIMER = (f"{RESEARCH_NOTICE}: models trained on the synthetic cohort say nothing reliable about "
              "patients, and no figure here is a clinical result.")


def choose_cases(records: Sequence[dict[str, Any]], count: int = 3) -> list[str]:
    """Best, median and worst DPC (evenly spaced for a larger `count`) among cases with reference tumour."""
    with_tumor = [r for r in records if int(r.get("ref_voxels") or 0) > 0 and r.get("dice") == r.get("dice")]
    scored = sorted(with_tumor, key=lambda r: (-float(r["dice"]), r["case"]))
    if not scored or count < 1:
        return []
    if count == 1 or len(scored) == 1:
        return [scored[0]["case"]]
    picks = [round(i * (len(scored) - 1) / (count - 1)) for i in range(count)]
    out: list[str] = []
    for i in picks:
        if scored[i]["case"] not in out:
            out.append(scored[i]["case"])
    return out


def _fold_logs(run_dir: Path) -> dict[str, list[dict[str, float]]]:
    logs = {}
    for log in sorted(run_dir.glob("fold_*/log.csv"), key=lambda p: int(p.parent.name.split("_")[-1])):
        rows = read_log_csv(log)
        if rows:
            logs[log.parent.name.replace("_", " ")] = rows
    return logs


def write_report(run_dir: str | Path, cases: Sequence[str] | None = None, num_cases: int = 3) -> Path:
    """Write RUN_DIR/report/*.png and index.md; returns the index path."""
    run_dir = Path(run_dir)
    if (run_dir / SEEDS_JSON).is_file():
        return _seeded_report(run_dir)
    if (run_dir / "experiment.json").is_file():
        return _experiment_report(run_dir)
    if not (run_dir / CROSSVAL_JSON).is_file():
        raise InputError("not a finished cross-validation run or experiment set (no crossval.json or "
                         "experiment.json)", run_dir)

    info = json.loads((run_dir / CROSSVAL_JSON).read_text())
    dataset = Dataset(info["dataset"])
    records = read_per_case_csv(run_dir / EVALUATION / "per_case.csv")
    dice = {r["case"]: r["dice"] for r in records}
    if cases:
        unknown = [c for c in cases if c not in dice]
        if unknown:
            raise InputError(f"case {unknown[0]} is not among the run's test cases", run_dir / EVALUATION)
        chosen = list(cases)
    else:
        chosen = choose_cases(records, num_cases)
    out = check_writable(run_dir / REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    method = info["method"]
    figures: list[tuple[str, str]] = []  # (caption, file name)

    for case in chosen:
        ttype = dataset.tumor_type(case) or "unknown type"
        caption = f"{case} ({ttype}), DPC {dice[case]:.1f} %"
        name = f"overlay_{case}.png"
        case_overlay_png(out / name, dataset.image_path(case, 0), dataset.label_path(case),
                         prediction_path(run_dir, case), title=f"{method}: {caption}")
        figures.append((f"Overlay, {caption}: reference red, prediction blue", name))
        npz = run_dir / PREDICTIONS / CONFIDENCE / f"{case}.npz"
        if npz.is_file():
            with np.load(npz) as z:
                name = f"confidence_{case}.png"
                confidence_png(out / name, z["image"], z["confidence"], z["reference"], z["prediction"],
                               title=f"{method}: {case}, axial slice {int(z['axial'])}")
            figures.append((f"URIM confidence map, {caption}", name))

    logs = _fold_logs(run_dir)
    if logs:
        training_curves_png(out / "training_curves.png", logs, title=f"{method}: training curves per fold")
        figures.append(("Training curves (loss; validation Dice) per fold", "training_curves.png"))
    by_type = info.get("by_type") or {}
    if by_type:
        types = type_order(by_type)
        type_dpc_bars_png(out / "dpc_by_type.png", {method: by_type}, types=types)
        figures.append(("DPC per tumour type (mean ± SD over cases)", "dpc_by_type.png"))

    sections = [("Table 1: metrics over the pooled test folds", "table1"),
                ("Table 2: DPC per tumour type", "table2"),
                ("Per test fold", "folds")]
    return _write_index(out, f"Cross-validation report: {method}", info, figures, run_dir, sections)


def _experiment_report(set_dir: Path) -> Path:
    info = json.loads((set_dir / "experiment.json").read_text())
    out = check_writable(set_dir / REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []
    by_type = {}
    for row in info["rows"]:
        path = set_dir / row / CROSSVAL_JSON
        if path.is_file():
            by_type[row] = json.loads(path.read_text()).get("by_type") or {}
    seen = {t for b in by_type.values() for t in b}
    types = type_order(seen)
    if by_type:
        type_dpc_bars_png(out / "dpc_by_type.png", by_type, types=types)
        figures.append(("DPC per tumour type, every row (mean ± SD over cases)", "dpc_by_type.png"))
    curves = {}
    for row in info["rows"]:
        logs = _fold_logs(set_dir / row)
        if logs:
            name = f"training_curves_{row}.png"
            training_curves_png(out / name, logs, title=f"{row}: training curves per fold")
            figures.append((f"Training curves of {row}", name))
            curves[row] = list(logs.values())
    if curves:
        learning_curve_png(out / "learning_curve.png", curves)
        figures.insert(0, (LEARNING_CURVE, "learning_curve.png"))
    sections = [("Metrics (mean ± SD over cases)", "table1"), ("DPC per tumour type", "table2"),
                ("Paired comparisons (DPC, B − A)", "comparison"), ("DPC per test fold", "folds"),
                ("DPC difference per test fold", "fold_differences")]
    return _write_index(out, f"Experiment set: {info['set']}", info, figures, set_dir, sections)


def _seeded_report(set_dir: Path) -> Path:
    """Learning curve over every (fold, seed) run of each row, per-type bars of the seed means, index."""
    info = json.loads((set_dir / SEEDS_JSON).read_text())
    out = check_writable(set_dir / REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []
    curves: dict[str, list[list[dict[str, float]]]] = {}
    per_type: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in info["rows"]:
        for seed in info["seeds"]:
            run = set_dir / seed_dir_name(seed) / row
            curves.setdefault(row, []).extend(_fold_logs(run).values())
            if (run / CROSSVAL_JSON).is_file():
                for t, s in (json.loads((run / CROSSVAL_JSON).read_text()).get("by_type") or {}).items():
                    per_type.setdefault(row, {}).setdefault(t, []).append(s)
    curves = {row: runs for row, runs in curves.items() if runs}
    if curves:
        learning_curve_png(out / "learning_curve.png", curves,
                           title=f"Learning curves over {len(info['seeds'])} seeds and every fold")
        figures.append((LEARNING_CURVE, "learning_curve.png"))
    by_type = {row: {t: _mean_summary(v) for t, v in types.items()} for row, types in per_type.items()}
    if by_type:
        seen = {t for b in by_type.values() for t in b}
        types = type_order(seen)
        type_dpc_bars_png(out / "dpc_by_type.png", by_type, types=types,
                          title="DPC per tumour type: mean over seeds, ± SD over cases (mean over seeds)")
        figures.append(("DPC per tumour type, every row (mean over seeds; ± SD over cases)",
                        "dpc_by_type.png"))
    sections = [("Metrics over seeds, the paper's beside them", "seed_table1"),
                ("DPC of each seed", "seed_dpc"), ("DPC per tumour type over seeds", "seed_table2"),
                ("Paired DPC differences over seeds", "seed_comparison"), ("The paper's claims", "claims")]
    title = f"Experiment set over seeds {info['seeds']}: {info['set']}"
    return _write_index(out, title, {**info, "folds": None}, figures, set_dir, sections)


def _mean_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of dpc and of dpc_sd (`over_seeds`); the largest n_cases."""
    st = over_seeds(summaries, "dpc")
    return {"n_cases": max(int(s.get("n_cases") or 0) for s in summaries), "dpc": st["mean"],
            "dpc_sd": st["case_sd"]}


def _write_index(out: Path, title: str, info: dict[str, Any], figures: list[tuple[str, str]], source: Path,
                 sections: list[tuple[str, str]]) -> Path:
    """index.md: the tables (embedded, with links to their CSV) and a link to each figure that exists."""
    lines = [f"# {title}", "", f"_{DISCLAIMER}_", ""]
    if info.get("folds") is not None:
        lines += [f"Test folds pooled: {info['folds']}.", ""]
    for heading, stem in sections:
        md = source / f"{stem}.md"
        if md.is_file():
            lines += [f"## {heading}", "", md.read_text().rstrip(), ""]
            if (source / f"{stem}.csv").is_file():
                lines += [f"CSV: [{stem}.csv](../{stem}.csv)", ""]
    lines += ["## Figures", ""]
    for caption, name in figures:
        if (out / name).is_file():
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    index = out / "index.md"
    write_text_atomic(index, "\n".join(lines))
    return index
