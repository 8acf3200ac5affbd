"""Seed repeats of an experiment set: each seed a full set run in SET/seed_S, finished (row, seed) runs
skipped, and the tables over seeds checked against the per-seed results read back independently."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from helpers.crossval_toys import CountingTrain, tiny_cohort, tiny_preset
from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.evaluation.paper_numbers import CLAIMS, PAPER_ROWS
from mpliver.experiments.seeds import run_seeded_experiments, seed_values
from mpliver.experiments.sets import get_set

ROWS = ["single_phase", "add"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_claim_names_rows_of_its_set():
    for claim in CLAIMS:
        rows = {r.name for r in get_set(claim.set).rows}
        assert {claim.lower, claim.higher} <= rows, claim
        assert (claim.lower, claim.higher) in get_set(claim.set).pairs, claim  # tabulated as a pair
    sets = {c.set for c in CLAIMS}
    assert sets == {"ablation", "fusion", "comparison", "backbones"}
    assert set(PAPER_ROWS) <= {r.name for s in sets for r in get_set(s).rows}


def test_seed_values_and_refusals(tmp_path):
    assert seed_values(5, 3) == [5, 6, 7]
    with pytest.raises(ConfigError, match="at least 1"):
        seed_values(0, 0)
    with pytest.raises(ConfigError, match="leave train.seed out"):
        run_seeded_experiments("ablation", tmp_path, tmp_path / "out", 2, overrides=["train.seed=3"])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    cohort = tiny_cohort(base)
    out = tmp_path_factory.mktemp("seeds") / "exp"
    preset = tiny_preset(base)
    first = CountingTrain()
    result = run_seeded_experiments("ablation", cohort, out, 2, preset=preset, only=ROWS, train_fn=first)
    again = CountingTrain()
    rerun = run_seeded_experiments("ablation", cohort, out, 2, preset=preset, only=ROWS, train_fn=again)
    return {"out": out / "ablation", "result": result, "first": first, "again": again, "rerun": rerun,
            "cohort": cohort, "preset": preset, "exp": out}


@pytest.mark.slow
def test_each_seed_runs_every_row_once_and_a_rerun_skips_them(seeded):
    assert seeded["first"].folds == [0, 1] * 4  # 2 seeds x 2 rows x 2 folds
    assert seeded["again"].folds == []
    assert seeded["rerun"].skipped == [(r, s) for s in (0, 1) for r in ROWS]
    for s in (0, 1):
        for row in ROWS:
            run = seeded["out"] / f"seed_{s}" / row
            assert (run / "crossval.json").is_file()
            assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == s
    # the seeds train different models on the same test cases
    cases = [json.loads((seeded["out"] / f"seed_{s}" / "add" / "crossval.json").read_text())["test_cases"]
             for s in (0, 1)]
    assert cases[0] == cases[1]


@pytest.mark.slow
def test_tables_over_seeds_match_the_per_seed_results(seeded):
    out = seeded["out"]
    per_seed = {(s, row): json.loads((out / f"seed_{s}" / row / "crossval.json").read_text())["summary"]
                for s in (0, 1) for row in ROWS}
    table = {r["method"]: r for r in _rows(out / "seed_dpc.csv")}
    assert list(table) == ROWS
    for row in ROWS:
        dpc = [per_seed[(s, row)]["dpc"] for s in (0, 1)]
        assert float(table[row]["seed 0"]) == pytest.approx(dpc[0])
        assert float(table[row]["mean over seeds"]) == pytest.approx(statistics.mean(dpc))
        assert float(table[row]["SD over seeds"]) == pytest.approx(statistics.stdev(dpc))
        case_sd = statistics.mean(per_seed[(s, row)]["dpc_sd"] for s in (0, 1))
        assert float(table[row]["SD over cases"]) == pytest.approx(case_sd)
        assert float(table[row]["paper DPC"]) == PAPER_ROWS[row].metrics["dpc"]
    t1 = {r["method"]: r for r in _rows(out / "seed_table1.csv")}
    voe = statistics.mean(per_seed[(s, "add")]["voe"] for s in (0, 1))
    assert float(t1["add"]["voe"]) == pytest.approx(voe)
    assert float(t1["add"]["voe_paper"]) == 35.97
    # the paired difference of each seed, from the per-case tables of both rows
    comparison = _rows(out / "seed_comparison.csv")
    assert [(r["A"], r["B"]) for r in comparison] == [("single_phase", "add")]
    for s in (0, 1):
        a, b = ({r["case"]: float(r["dice"]) for r in _rows(out / f"seed_{s}" / row / "evaluation"
                                                            / "per_case.csv")} for row in ROWS)
        assert float(comparison[0][f"seed {s}"]) == pytest.approx(statistics.mean(b[c] - a[c] for c in a))
    # the Markdown shows the p-value with 3 significant digits (not rounded to 0.00 as a metric)
    md_row = (out / "seed_comparison.md").read_text().splitlines()[2].strip("|").split("|")
    header = (out / "seed_comparison.md").read_text().splitlines()[0].strip("|").split("|")
    p_cell = md_row[[h.strip() for h in header].index("p")].strip()
    assert p_cell == f"{float(comparison[0]['p']):.3g}"
    claims = (out / "claims.md").read_text()
    assert claims.startswith("- **SP < MP (FLF-add)**: ") and "paper +6.46" in claims
    doc = (out / "seed_tables.md").read_text()
    assert "SD over seeds" in doc and "paper DPC" in doc and "Table 3, SP" in doc
    info = json.loads((out / "seeds.json").read_text())
    assert info["seeds"] == [0, 1] and info["rows"] == ROWS


@pytest.mark.slow
def test_cli_seeds_prints_the_tables_and_the_claims(seeded, capsys):
    code = main(["experiments", "ablation", str(seeded["cohort"]), "--out", str(seeded["exp"]),
                 "--seeds", "2", "--preset", str(seeded["preset"]), "--only", ",".join(ROWS)])
    captured = capsys.readouterr()
    assert code in (0, None)
    assert "SP < MP (FLF-add)" in captured.out and "SD seeds" in captured.out
    assert "skipped 4" in captured.err.replace("\n", " ")


@pytest.mark.slow
def test_report_of_a_seeded_set_draws_the_learning_curve_and_holds_the_claims(seeded):
    from mpliver.experiments.report import write_report

    index = write_report(seeded["out"])
    text = index.read_text()
    assert (index.parent / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Learning curve" in text and "The paper's claims" in text and "SP < MP (FLF-add)" in text
    assert (index.parent / "dpc_by_type.png").is_file()
