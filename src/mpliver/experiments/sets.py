"""Named sets of configurations that reproduce the paper's tables, each row a cross-validation run.

Sets (model names of docs/method.md §3; the paper's row in brackets):
- `comparison` (Table 1, top): mc_fcn, mw_unet, pa_resseg, paper ("Ours").
- `fusion` (Table 1, bottom): ilf, dlf, mw, pa, paper ("SAM (Ours)"), all with URIM.
- `ablation` (Table 3): single_phase, add, sam, each with urim=False (SP; MP + FLF-add; MP + SAM), then paper.
- `backbones` (§3 "Robustness"): add (FLF-add, no URIM) and paper (SAM + URIM) on unet, resnet50 and
  resnext50; the paper reports the gain of paper over add on each backbone.

Every row runs in EXP/SET/ROW with `crossval` on the same dataset and folds, so every row is evaluated on the
same cases; a finished row is not run again. EXP/SET then holds the rows side by side (`table1`, `table2`),
the paired comparisons (`comparison`: mean DPC difference B − A over the same cases and a paired test's
p-value), the DPC of each test fold (`folds`: the fold-to-fold spread against which a difference is judged),
and `tables.md` with all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpliver.errors import RESEARCH_NOTICE, ConfigError
from mpliver.evaluation.aggregate import mean_sd, paired_comparison
from mpliver.evaluation.tables import (
    comparison_csv,
    comparison_markdown,
    csv_text,
    format_number,
    markdown_table,
    table1_csv,
    table1_markdown,
    table2_csv,
    table2_markdown,
)
from mpliver.experiments.crossval import (
    CROSSVAL_JSON,
    CrossvalResult,
    check_run_config,
    crossval,
    load_result,
    select_folds,
)
from mpliver.experiments.seed_tables import paper_side_by_side
from mpliver.io.atomic import write_json_atomic, write_text_atomic
from mpliver.io.labels import type_order
from mpliver.io.layout import Dataset
from mpliver.io.lock import FolderLock
from mpliver.models import resolve_config
from mpliver.runtime import resolve_device
from mpliver.training.config import load_config
from mpliver.training.run_info import write_run_info

REFERENCE = "paper"


@dataclass(frozen=True)
class Row:
    """One configuration of a set: its row name and the config overrides that define it."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentSet:
    """Rows in table order, and the (A, B) pairs whose paired difference B − A the set reports."""

    name: str
    title: str
    rows: tuple[Row, ...]
    pairs: tuple[tuple[str, str], ...]
    seeded: bool = True  # `mpliver experiments --seeds K` repeats it (nnU-Net's row uses nnU-Net's seeding)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        rows = ", ".join(r.name for r in self.rows)
        raise ConfigError(f"set '{self.name}' has no row '{name}' (rows: {rows})")


def _model(name: str, **options: Any) -> tuple[str, ...]:
    out = (f"model.name={name}",) + tuple(
        f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()
    )
    if name == "mw_unet" or options.get("backbone") == "unet":
        # a preset's `blocks` (e.g. cpu-small's) sizes the ResNeXt/ResNet stages; a U-Net encoder has none
        out += ("model.blocks=null",)
    return out


def _vs_reference(rows: Sequence[Row]) -> tuple[tuple[str, str], ...]:
    return tuple((r.name, REFERENCE) for r in rows if r.name != REFERENCE)


def _build_sets() -> dict[str, ExperimentSet]:
    comparison = tuple(Row(n, _model(n)) for n in ("mc_fcn", "mw_unet", "pa_resseg", "paper"))
    fusion = tuple(Row(n, _model(n, urim=True)) for n in ("ilf", "dlf", "mw", "pa", "paper"))
    ablation = tuple(Row(n, _model(n, urim=False)) for n in ("single_phase", "add", "sam")) + (
        Row("paper", _model("paper")),
    )
    backbones: tuple[Row, ...] = ()
    gains: tuple[tuple[str, str], ...] = ()
    for bb in ("unet", "resnet50", "resnext50"):
        paper_row = "paper" if bb == "resnext50" else f"paper_{bb}"
        backbones += (
            Row(f"add_{bb}", _model("add", urim=False, backbone=bb)),
            Row(paper_row, _model("paper", backbone=bb)),
        )
        gains += ((f"add_{bb}", paper_row),)
    steps = (("single_phase", "add"), ("add", "sam"), ("sam", "paper"))
    return {
        "comparison": ExperimentSet(
            "comparison",
            "Comparison with other methods (Table 1, top; Table 2)",
            comparison,
            _vs_reference(comparison),
        ),
        "fusion": ExperimentSet(
            "fusion", "Fusion strategies, all with URIM (Table 1, bottom)", fusion, _vs_reference(fusion)
        ),
        "ablation": ExperimentSet(
            "ablation",
            "Ablation (Table 3)",
            ablation,
            _vs_reference(ablation) + tuple(p for p in steps if p[1] != REFERENCE),
        ),
        "backbones": ExperimentSet(
            "backbones",
            "Backbones: gain of SAM + URIM over FLF-add (§3 Robustness)",
            backbones,
            gains + (("paper_unet", "paper"), ("paper_resnet50", "paper")),
        ),
    }


EXPERIMENT_SETS: dict[str, ExperimentSet] = _build_sets()


def get_set(name: str) -> ExperimentSet:
    if name not in EXPERIMENT_SETS:
        raise ConfigError(f"unknown experiment set '{name}' (sets: {', '.join(EXPERIMENT_SETS)})")
    return EXPERIMENT_SETS[name]


@dataclass
class ExperimentResult:
    """The rows of one set (each a `CrossvalResult`), which of them ran now, and the paired comparisons."""

    out_dir: Path
    set: ExperimentSet
    results: dict[str, CrossvalResult] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None  # the training seed of every row (train.seed)


def row_finished(run_dir: Path, folds: Sequence[int]) -> bool:
    """A row is finished when its crossval.json exists and covers exactly `folds`."""
    path = run_dir / CROSSVAL_JSON
    if not path.is_file():
        return False
    try:
        return sorted(json.loads(path.read_text()).get("folds", [])) == sorted(folds)
    except json.JSONDecodeError:
        return False


def run_experiments(
    set_name: str,
    dataset_dir: str | Path,
    out_dir: str | Path,
    preset: str | Path | None = "cpu-small",
    overrides: Sequence[str] = (),
    folds: int | Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    train_fn: Callable[..., Path] | None = None,
    on_event: Callable[[str], None] | None = None,
    set_dir: str | Path | None = None,
) -> ExperimentResult:
    """Run every row of `set_name` (or the rows in `only`) as a cross-validation in OUT/SET/ROW, skipping
    finished rows, then write the side-by-side tables into OUT/SET (with every finished row of the set that
    matches the configuration and folds, also those left out by `only`).

    `overrides` apply to every row before the row's own (which define the row and win). `set_dir` replaces
    OUT/SET (the seed repeats of `experiments.seeds` run each seed in OUT/SET/seed_S).
    """
    exp = get_set(set_name)
    rows = list(exp.rows) if only is None else [exp.row(n) for n in only]
    say = on_event or (lambda _msg: None)
    set_dir = Path(out_dir) / exp.name if set_dir is None else Path(set_dir)
    configs = {row.name: load_config(preset, list(overrides) + list(row.overrides)) for row in rows}
    for row_name, config in configs.items():  # refuse a row the models cannot build before any training
        try:
            resolve_config(config.model.name, **config.model.overrides)
        except ConfigError as exc:
            raise ConfigError(f"row '{row_name}' of set '{exp.name}': {exc}") from None
    selected = select_folds(list(Dataset(dataset_dir).folds()), folds)
    base = load_config(preset, list(overrides))
    device = resolve_device(base.train.device, what="train.device")  # a bad device creates no folder
    with FolderLock(set_dir, "experiments run of this set"):  # a second run here is refused
        write_run_info(
            set_dir,
            base,
            base.train.seed,
            device,
            extra={
                "kind": "experiments",
                "set": exp.name,
                "dataset": str(Path(dataset_dir).resolve()),
                "folds": selected,
                "rows": {row.name: list(row.overrides) for row in rows},
            },
        )

        result = ExperimentResult(out_dir=set_dir, set=exp, seed=base.train.seed)
        for row in rows:
            run_dir = set_dir / row.name
            config = configs[row.name]
            check_run_config(run_dir, config)
            if row_finished(run_dir, selected):
                say(f"{row.name}: finished earlier, skipped")
                result.results[row.name] = load_result(run_dir)
                result.skipped.append(row.name)
                continue
            say(f"{row.name}: cross-validation ({' '.join(row.overrides)}) -> {run_dir}")
            result.results[row.name] = crossval(
                config,
                dataset_dir,
                run_dir,
                folds=selected,
                name=row.name,
                train_fn=train_fn,
                on_event=lambda msg, n=row.name: say(f"{n}: {msg}"),
            )
            result.ran.append(row.name)
        for row in exp.rows:  # rows left out by `only` but finished earlier still belong in the tables
            run_dir = set_dir / row.name
            if row.name in result.results or not row_finished(run_dir, selected):
                continue
            try:
                check_run_config(run_dir, load_config(preset, list(overrides) + list(row.overrides)))
            except ConfigError:
                continue
            result.results[row.name] = load_result(run_dir)
        write_tables(result)
        return result


def fold_dpc(result: CrossvalResult) -> dict[int, float]:
    """Mean DPC of each test fold (from the per-case records)."""
    folds = sorted({int(r["fold"]) for r in _with_folds(result) if r.get("fold") is not None})
    out = {}
    for f in folds:
        mean, _, _ = mean_sd(r["dice"] for r in _with_folds(result) if r.get("fold") == f)
        out[f] = math.nan if mean is None else mean
    return out


def _with_folds(result: CrossvalResult) -> list[dict[str, Any]]:
    """Records with their fold: from crossval (set) or from the dataset.json of a loaded run."""
    records = result.records
    if records and all(r.get("fold") is not None and r.get("fold") == r.get("fold") for r in records):
        return records

    info = json.loads((result.run_dir / CROSSVAL_JSON).read_text())
    dataset = Dataset(info["dataset"])
    for r in records:
        r["fold"] = dataset.fold(r["case"])
    return records


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fold_spread(values: Sequence[float | None]) -> float | None:
    """Sample SD of the defined values (None with fewer than two)."""
    finite = [v for v in values if v is not None and v == v]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def _comparisons(result: ExperimentResult, per_fold: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    """The set's paired comparisons (pooled over cases, and B − A per test fold) of the rows that ran."""
    res = result.results
    comparisons = []
    for a, b in result.set.pairs:
        if a not in res or b not in res:
            continue
        c = paired_comparison(res[a].records, res[b].records, key="dice")
        diffs = [
            _finite_or_none(per_fold[b].get(f, math.nan) - per_fold[a].get(f, math.nan)) for f in per_fold[a]
        ]
        c.update(method_a=a, method_b=b, fold_diffs=diffs, fold_diff_sd=_fold_spread(diffs))
        comparisons.append(c)
    return comparisons


def _formatted(rows: list[list[Any]], skip: int) -> list[list[Any]]:
    """Rows with every cell after the first `skip` formatted as a number (None as empty)."""
    return [r[:skip] + [format_number(v) if isinstance(v, float) or v is None else v for v in r[skip:]]
            for r in rows]


def _fold_tables(names: list[str], per_fold: dict[str, dict[int, float]],
                 comparisons: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """{stem: (Markdown, CSV)} of the DPC per test fold and of the B − A differences per fold."""
    folds = sorted({f for n in names for f in per_fold[n]})
    fold_header = ["method"] + [f"fold {f}" for f in folds] + ["mean of folds", "SD over folds"]
    fold_rows = []
    for n in names:
        vals = [_finite_or_none(per_fold[n].get(f, math.nan)) for f in folds]
        finite = [v for v in vals if v is not None]
        fold_rows.append([n] + vals + [sum(finite) / len(finite) if finite else None, _fold_spread(vals)])
    diff_header = ["A", "B"] + [f"fold {f}" for f in folds] + ["SD over folds", "pooled mean diff", "p"]
    diff_rows = [[c["method_a"], c["method_b"]] + list(c["fold_diffs"])
                 + [c["fold_diff_sd"], c["mean_diff"], c["p_value"]] for c in comparisons]
    return {
        "folds": (markdown_table(fold_header, _formatted(fold_rows, 1)), csv_text(fold_header, fold_rows)),
        "fold_differences": (markdown_table(diff_header, _formatted(diff_rows, 2)),
                             csv_text(diff_header, diff_rows)),
    }


def _tables_md(result: ExperimentResult, names: list[str], summaries: dict[str, Any],
               texts: dict[str, tuple[str, str]]) -> str:
    """tables.md: every table of the set with its heading, and the paper side by side."""
    n_cases = {n: summaries[n].get("n_cases") for n in names}
    doc = [
        f"# {result.set.title}",
        "",
        f"Rows: {', '.join(names)}; cases per row: {sorted(set(n_cases.values()))}; test folds pooled. "
        "Predictions are restricted to the reference liver mask (oracle liver, as in the paper's "
        "evaluation); `mpliver predict` uses the bundle's liver model instead.",
        f"{RESEARCH_NOTICE} (synthetic or in-house data).",
        "",
        "## Metrics (mean ± SD over cases)",
        "",
        texts["table1"][0],
        "## DPC (%) per tumour type",
        "",
        texts["table2"][0],
        "## Paired comparisons over the same cases (DPC, B − A)",
        "",
        texts["comparison"][0],
        "## DPC (%) of each test fold",
        "",
        texts["folds"][0],
        "## DPC difference B − A per test fold",
        "",
        "A difference smaller than its SD over folds is within the fold-to-fold spread.",
        "",
        texts["fold_differences"][0],
        "## The paper side by side",
        "",
        paper_side_by_side(result.set, {0 if result.seed is None else result.seed: result.results}),
    ]
    return "\n".join(doc)


def write_tables(result: ExperimentResult) -> None:
    """Side-by-side Tables 1 and 2, paired comparisons and per-fold DPC, as Markdown + CSV, and tables.md."""
    out, res = result.out_dir, result.results
    names = [r.name for r in result.set.rows if r.name in res]
    summaries = {n: res[n].summary for n in names}
    by_type = {n: res[n].by_type for n in names}
    types = type_order({t for n in names for t in by_type[n]})
    per_fold = {n: fold_dpc(res[n]) for n in names}
    comparisons = result.comparisons = _comparisons(result, per_fold)
    texts = {
        "table1": (table1_markdown(summaries), table1_csv(summaries)),
        "table2": (table2_markdown(by_type, types=types, calibration=True), table2_csv(by_type, types=types)),
        "comparison": (comparison_markdown(comparisons), comparison_csv(comparisons)),
        **_fold_tables(names, per_fold, comparisons),
    }
    for stem, (md, csv) in texts.items():
        write_text_atomic(out / f"{stem}.md", md)
        write_text_atomic(out / f"{stem}.csv", csv)
    write_text_atomic(out / "tables.md", _tables_md(result, names, summaries, texts))
    write_json_atomic(out / "experiment.json", {
        "set": result.set.name, "rows": names, "ran": result.ran, "skipped": result.skipped,
        "seconds": {n: res[n].seconds for n in names}, "summaries": summaries, "comparisons": comparisons,
    })
