"""Experiment sets: their rows resolve to the docs/method.md §3 models, a set runs each row as a crossval,
skips finished rows, and writes side-by-side tables with paired differences (checked against SciPy)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from helpers.crossval_toys import CountingTrain, dataset_folds, tiny_cohort, tiny_preset
from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.experiments.crossval import CrossvalResult, crossval
from mpliver.experiments.seeds import run_seeded_experiments
from mpliver.experiments.sets import (
    EXPERIMENT_SETS,
    ExperimentResult,
    get_set,
    run_experiments,
    write_tables,
)
from mpliver.io.lock import FolderBusyError, FolderLock
from mpliver.models import resolve_config
from mpliver.training.config import load_config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _model_of(set_name: str, row: str):
    config = load_config("cpu-small", list(get_set(set_name).row(row).overrides))
    return resolve_config(config.model.name, **config.model.overrides)


def test_sets_resolve_to_the_models_of_the_paper_tables():
    assert [r.name for r in get_set("comparison").rows] == ["mc_fcn", "mw_unet", "pa_resseg", "paper"]
    assert [r.name for r in get_set("fusion").rows] == ["ilf", "dlf", "mw", "pa", "paper"]
    assert [r.name for r in get_set("ablation").rows] == ["single_phase", "add", "sam", "paper"]
    for row in ("ilf", "dlf", "mw", "pa", "paper"):
        assert _model_of("fusion", row).urim is True
    expected = {"single_phase": ("single", False), "add": ("add", False), "sam": ("sam", False),
                "paper": ("sam", True)}
    for row, (fusion, urim) in expected.items():
        cfg = _model_of("ablation", row)
        assert (cfg.fusion, cfg.urim) == (fusion, urim)
    for bb in ("unet", "resnet50", "resnext50"):
        add = _model_of("backbones", f"add_{bb}")
        paper = _model_of("backbones", "paper" if bb == "resnext50" else f"paper_{bb}")
        assert (add.fusion, add.urim, add.backbone) == ("add", False, bb)
        assert (paper.fusion, paper.urim, paper.backbone) == ("sam", True, bb)
    # every row builds under the cpu-small preset, whose `blocks` only apply to ResNeXt/ResNet stages
    from mpliver.models import resolve_config
    from mpliver.training.config import load_config

    for exp in EXPERIMENT_SETS.values():
        for r in exp.rows:
            cfg = load_config("cpu-small", list(r.overrides))
            resolve_config(cfg.model.name, **cfg.model.overrides)
    for name, exp in EXPERIMENT_SETS.items():
        rows = {r.name for r in exp.rows}
        assert "paper" in rows and all(a in rows and b in rows for a, b in exp.pairs), name
    with pytest.raises(ConfigError, match="unknown experiment set"):
        get_set("tables")
    with pytest.raises(ConfigError, match="no row"):
        get_set("ablation").row("mc_fcn")


def _records(dice: dict[str, float], folds: dict[str, int]) -> list[dict]:
    return [{"case": c, "tumor_type": "HCC" if i % 2 else "FNH", "dice": d, "fold": folds[c],
             "ref_voxels": 10, "pred_voxels": 10, "intersection_voxels": 5}
            for i, (c, d) in enumerate(sorted(dice.items()))]


def test_side_by_side_tables_and_paired_differences(tmp_path):
    from mpliver.evaluation.aggregate import summarize, summarize_by_type

    cases = [f"C{i}" for i in range(8)]
    folds = {c: i % 2 for i, c in enumerate(cases)}
    rng = np.random.default_rng(1)
    paper = {c: float(v) for c, v in zip(cases, rng.uniform(60, 90, 8), strict=True)}
    add = {c: paper[c] - float(d) for c, d in zip(cases, rng.uniform(-2, 8, 8), strict=True)}
    results = {}
    for name, dice in (("add", add), ("paper", paper)):
        records = _records(dice, folds)
        results[name] = CrossvalResult(run_dir=tmp_path / name, method=name, folds=[0, 1], records=records,
                                       summary=summarize(records), by_type=summarize_by_type(records))
    exp = ExperimentResult(out_dir=tmp_path, set=get_set("ablation"), results=results)
    write_tables(exp)

    table1 = _rows(tmp_path / "table1.csv")
    assert [r["method"] for r in table1] == ["add", "paper"]
    assert float(table1[1]["dpc"]) == pytest.approx(np.mean(list(paper.values())))
    assert {(r["method"], r["tumor_type"]) for r in _rows(tmp_path / "table2.csv")} == {
        (m, t) for m in ("add", "paper") for t in ("FNH", "HCC")}
    comparison = _rows(tmp_path / "comparison.csv")
    assert [(r["method_a"], r["method_b"]) for r in comparison] == [("add", "paper")]
    diffs = np.array([paper[c] - add[c] for c in cases])
    assert float(comparison[0]["mean_diff"]) == pytest.approx(diffs.mean())
    assert int(comparison[0]["n_pairs"]) == 8
    assert float(comparison[0]["p_wilcoxon"]) == pytest.approx(stats.wilcoxon(diffs).pvalue)
    fold_diffs = _rows(tmp_path / "fold_differences.csv")[0]
    per_fold = [float(np.mean([paper[c] - add[c] for c in cases if folds[c] == f])) for f in (0, 1)]
    assert [float(fold_diffs["fold 0"]), float(fold_diffs["fold 1"])] == pytest.approx(per_fold)
    assert float(fold_diffs["SD over folds"]) == pytest.approx(float(np.std(per_fold, ddof=1)))
    folds_table = {r["method"]: r for r in _rows(tmp_path / "folds.csv")}
    assert float(folds_table["add"]["fold 1"]) == pytest.approx(
        np.mean([add[c] for c in cases if folds[c] == 1]))
    tables = (tmp_path / "tables.md").read_text()
    for heading in ("Metrics", "per tumour type", "Paired comparisons", "each test fold", "per test fold"):
        assert heading in tables
    assert "oracle liver" in tables  # the tables say that the reference liver mask bounded the predictions
    # the paper's numbers beside ours: Table 3's FLF-add and full-model DPC, and their difference
    assert "## The paper side by side" in tables and "| add | 75.31 | Table 3, SP+MP (FLF-add) |" in tables
    assert "| add | paper |" in tables and "| 4.81 |" in tables
    summary = json.loads((tmp_path / "experiment.json").read_text())
    assert summary["rows"] == ["add", "paper"] and not math.isnan(summary["comparisons"][0]["mean_diff"])
    assert "--seeds 3` measures it" in tables  # one seed: the tables say how to measure the seed spread
    # a set that `--seeds` cannot repeat (nnU-Net's row) does not suggest it
    unseeded = dataclasses.replace(get_set("ablation"), seeded=False)
    write_tables(ExperimentResult(out_dir=tmp_path / "unseeded", set=unseeded, results=results))
    unseeded_tables = (tmp_path / "unseeded" / "tables.md").read_text()
    assert "One seed measures no seed spread" in unseeded_tables and "--seeds" not in unseeded_tables


@pytest.mark.slow
def test_a_set_runs_each_row_once_and_skips_finished_rows(tmp_path_factory, capsys):
    cohort = tiny_cohort(tmp_path_factory.getbasetemp())
    preset = tiny_preset(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("experiments")
    counter = CountingTrain()
    first = run_experiments("ablation", cohort, out, preset=preset, folds=1, only=["add", "paper"],
                            train_fn=counter)
    assert first.ran == ["add", "paper"] and counter.folds == [0, 0]
    set_dir = out / "ablation"
    checkpoints = {r: (set_dir / r / "fold_0" / "checkpoints" / "last.pt").stat().st_mtime_ns
                   for r in ("add", "paper")}
    second = run_experiments("ablation", cohort, out, preset=preset, folds=1,
                             only=["add", "paper"], train_fn=counter)
    assert second.skipped == ["add", "paper"] and second.ran == [] and counter.folds == [0, 0]
    assert checkpoints == {r: (set_dir / r / "fold_0" / "checkpoints" / "last.pt").stat().st_mtime_ns
                           for r in ("add", "paper")}
    # a call for one row still tabulates the other finished rows of the set
    third = run_experiments("ablation", cohort, out, preset=preset, folds=1, only=["paper"], train_fn=counter)
    assert third.skipped == ["paper"] and sorted(third.results) == ["add", "paper"]
    assert counter.folds == [0, 0]
    # each row is a crossval run of its own configuration, with its metadata
    for row, urim in (("add", False), ("paper", True)):
        info = json.loads((set_dir / row / "run_info.json").read_text())
        assert info["kind"] == "crossval" and info["config"]["model"]["name"] == row
        assert (set_dir / row / "table1.md").exists()
        fold_cfg = json.loads((set_dir / row / "fold_0" / "run_info.json").read_text())["config"]["model"]
        assert fold_cfg.get("urim", True) is urim
    assert json.loads((set_dir / "run_info.json").read_text())["kind"] == "experiments"
    test_cases = dataset_folds(cohort)[0]
    comparison = _rows(set_dir / "comparison.csv")
    assert [(r["method_a"], r["method_b"]) for r in comparison] == [("add", "paper")]
    assert int(comparison[0]["n_pairs"]) + int(comparison[0]["n_undefined"]) == len(test_cases)
    a = {r["case"]: float(r["dice"]) for r in _rows(set_dir / "add" / "evaluation" / "per_case.csv")}
    b = {r["case"]: float(r["dice"]) for r in _rows(set_dir / "paper" / "evaluation" / "per_case.csv")}
    assert sorted(a) == sorted(b) == test_cases
    assert float(comparison[0]["mean_diff"]) == pytest.approx(np.mean([b[c] - a[c] for c in test_cases]))
    assert [r["method"] for r in _rows(set_dir / "table1.csv")] == ["add", "paper"]
    # the command line finds both rows finished, and the report of the set links its figures
    assert main(["experiments", "ablation", str(cohort), "--out", str(out), "--folds", "1", "--only",
                 "add,paper", "--preset", str(preset)]) == 0
    assert "skipped (finished earlier) ['add', 'paper']" in capsys.readouterr().err.replace("\n", " ")
    assert main(["report", str(set_dir)]) == 0
    index = (set_dir / "report" / "index.md").read_text()
    assert "dpc_by_type.png" in index and (set_dir / "report" / "dpc_by_type.png").exists()


def test_unknown_set_or_row_is_a_clear_error(tmp_path, capsys):
    assert main(["experiments", "tables", str(tmp_path), "--out", str(tmp_path / "exp")]) == 2
    assert "unknown experiment set 'tables'" in capsys.readouterr().err
    args = ["experiments", "ablation", str(tmp_path), "--out", str(tmp_path / "exp"), "--only", "mc_fcn"]
    assert main(args) == 2
    assert "has no row 'mc_fcn'" in capsys.readouterr().err
    # a row the models cannot build is refused before anything trains
    with pytest.raises(ConfigError, match="row 'add_unet'.*width"):
        run_experiments("backbones", tmp_path, tmp_path / "exp", overrides=["model.width=0"])
    assert not (tmp_path / "exp").exists()


def test_a_folder_another_run_is_using_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """Two runs never share an experiment set's folder or a row's folder: the second is refused in one
    line that names the folder and the holder, and writes nothing there."""
    cohort, preset = tiny_cohort(tmp_path), tiny_preset(tmp_path)
    out = tmp_path / "exp"
    set_dir, row_dir = out / "ablation", out / "ablation" / "paper"
    with FolderLock(set_dir, "experiments run of this set"):  # what a running `experiments ablation` holds
        code = main(["experiments", "ablation", str(cohort), "--out", str(out), "--folds", "1", "--only",
                     "paper", "--preset", str(preset)])
        err = capsys.readouterr().err.replace("\n", "")  # the console wraps long lines
        assert code == 2
        assert f"{set_dir}: in use by another experiments run of this set (pid {os.getpid()}" in err
    assert sorted(p.name for p in set_dir.iterdir()) == []  # no run_info, no row folder; the lock is gone
    with FolderLock(set_dir, "experiments run of this set"):  # a seeded run is refused before any seed runs
        with pytest.raises(FolderBusyError, match="in use by another experiments run of this set"):
            run_seeded_experiments("ablation", cohort, out, seeds=2, preset=preset, folds=1, only=["paper"],
                                   train_fn=CountingTrain())
    assert sorted(p.name for p in set_dir.iterdir()) == []
    # `experiments nnunet` locks EXP/nnunet the same way (its extra is not needed to reach the refusal)
    import mpliver.experiments.nnunet as nnunet

    monkeypatch.setattr(nnunet, "require_nnunet", lambda what: None)
    with FolderLock(out / "nnunet", "nnU-Net experiment in this folder"):
        with pytest.raises(FolderBusyError, match="in use by another nnU-Net experiment in this folder"):
            nnunet.run_nnunet_experiment(cohort, out)
    assert sorted(p.name for p in (out / "nnunet").iterdir()) == []
    with FolderLock(row_dir, "cross-validation of this folder"):  # e.g. the same row linked into two sets
        with pytest.raises(FolderBusyError, match="in use by another cross-validation of this folder"):
            crossval(load_config(preset), cohort, row_dir, folds=1, train_fn=CountingTrain())
    assert sorted(p.name for p in row_dir.iterdir()) == []
