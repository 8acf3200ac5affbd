"""Cross-validation on a tiny synthetic cohort: predictions of exactly the test cases on the PV grid, the
tables, skipping of finished folds, run metadata, the report, and bad input."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from helpers.crossval_toys import TINY_OVERRIDES, CountingTrain, dataset_folds, tiny_cohort, tiny_preset
from mpliver.cli import main
from mpliver.errors import ConfigError, InputError
from mpliver.experiments.crossval import crossval, select_folds
from mpliver.io.nifti import read_nifti
from mpliver.training.config import load_config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _mtimes(paths: list[Path]) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def cv(tmp_path_factory, cohort):
    """First fold only, then all folds (fold 0 must be skipped), then all again (nothing trains)."""
    run = tmp_path_factory.mktemp("crossval") / "run"
    preset = tiny_preset(tmp_path_factory.getbasetemp())
    config = load_config(preset)
    counter = CountingTrain()
    folds = dataset_folds(cohort)
    steps = {}
    fold0_files = [run / "fold_0" / "checkpoints" / "last.pt"] + [run / "predictions" / f"{c}.nii.gz"
                                                                 for c in folds[0]]
    for step, k in (("first", 1), ("all", None), ("again", None)):
        result = crossval(config, cohort, run, folds=k, train_fn=counter)
        steps[step] = {
            "calls": list(counter.folds), "result": result,
            "predictions": sorted(p.name for p in (run / "predictions").glob("*.nii.gz")),
            "fold0_mtimes": _mtimes(fold0_files),
            "table1": _rows(run / "table1.csv"),
        }
    return {"run": run, "config": config, "steps": steps, "folds": folds, "preset": preset}


@pytest.mark.slow
def test_predictions_are_exactly_the_test_cases_of_the_folds_run(cv):
    folds, steps = cv["folds"], cv["steps"]
    assert steps["first"]["predictions"] == sorted(f"{c}.nii.gz" for c in folds[0])
    assert steps["all"]["predictions"] == sorted(f"{c}.nii.gz" for cs in folds.values() for c in cs)
    assert int(steps["first"]["table1"][0]["n_cases"]) == len(folds[0])
    assert int(steps["all"]["table1"][0]["n_cases"]) == sum(len(c) for c in folds.values())


@pytest.mark.slow
def test_predictions_lie_on_the_pv_grid_with_the_liver_of_the_label(cv, cohort):
    for path in sorted((cv["run"] / "predictions").glob("*.nii.gz")):
        case = path.name[: -len(".nii.gz")]
        pred, geom = read_nifti(path)
        _, pv_geom = read_nifti(cohort / "imagesTr" / f"{case}_0000.nii.gz")
        label, _ = read_nifti(cohort / "labelsTr" / f"{case}.nii.gz")
        assert pred.shape == label.shape == tuple(pv_geom.shape)
        np.testing.assert_allclose(geom.affine, pv_geom.affine, atol=1e-4)
        assert set(np.unique(pred)) <= {0, 1, 2}
        # liver = the label's liver (evaluation parity); tumour only inside it
        np.testing.assert_array_equal(pred >= 1, label >= 1)


@pytest.mark.slow
def test_tables_hold_every_method_type_and_fold_row(cv, cohort):
    run = cv["run"]
    table = json.loads((cohort / "dataset.json").read_text())["cases"]
    types = {c: i["tumor_type"] for c, i in table.items()}
    per_case = _rows(run / "evaluation" / "per_case.csv")
    assert sorted(r["case"] for r in per_case) == sorted(types)
    table1 = _rows(run / "table1.csv")
    assert [r["method"] for r in table1] == ["paper"]
    # DPC of Table 1 = the mean of the per-case Dice values (recomputed here)
    assert float(table1[0]["dpc"]) == pytest.approx(statistics.mean(float(r["dice"]) for r in per_case))
    table2 = _rows(run / "table2.csv")
    assert sorted(r["tumor_type"] for r in table2) == sorted(set(types.values()))
    for row in table2:
        assert int(row["n_cases"]) == sum(1 for t in types.values() if t == row["tumor_type"])
    assert [r["test fold"] for r in _rows(run / "folds.csv")] == ["fold 0", "fold 1"]
    md1, md2 = (run / "table1.md").read_text(), (run / "table2.md").read_text()
    assert "| paper |" in md1 and "DPC (%)" in md1
    assert all(t in md2 for t in set(types.values()))


@pytest.mark.slow
def test_rerun_skips_finished_folds(cv):
    steps = cv["steps"]
    assert steps["first"]["calls"] == [0]
    assert steps["all"]["calls"] == [0, 1]          # only fold 1 trained in the second call
    assert steps["again"]["calls"] == [0, 1]        # nothing trained in the third
    assert steps["all"]["result"].skipped == [0] and steps["all"]["result"].trained == [1]
    assert steps["again"]["result"].skipped == [0, 1] and steps["again"]["result"].trained == []
    assert steps["first"]["fold0_mtimes"] == steps["all"]["fold0_mtimes"] == steps["again"]["fold0_mtimes"]


@pytest.mark.slow
def test_run_folders_hold_config_environment_git_and_seed(cv):
    run = cv["run"]
    for folder in (run, run / "fold_0", run / "fold_1"):
        info = json.loads((folder / "run_info.json").read_text())
        assert info["seed"] == 0 and "commit" in info["git"] and info["environment"]["torch"]
        assert (folder / "config.yaml").exists()
    assert json.loads((run / "run_info.json").read_text())["kind"] == "crossval"
    saved = json.loads((run / "crossval.json").read_text())
    assert saved["folds"] == [0, 1] and saved["model"] == "paper"


@pytest.mark.slow
def test_a_different_configuration_is_refused(cv, cohort):
    other = load_config(cv["preset"], ["optim.epochs=2"])
    with pytest.raises(ConfigError, match="optim.epochs"):
        crossval(other, cohort, cv["run"], train_fn=CountingTrain())


@pytest.mark.slow
def test_cli_rerun_and_report_link_only_existing_files(cv, cohort, capsys):
    run = cv["run"]
    # remove one confidence map: the report must not link a figure it cannot draw
    confidence = sorted((run / "predictions" / "confidence").glob("*.npz"))
    assert confidence, "the URIM model saves confidence slices"
    dropped = confidence[0].name[: -len(".npz")]
    confidence[0].unlink()
    per_case = _rows(run / "evaluation" / "per_case.csv")
    cases = [r["case"] for r in per_case][:2]
    if dropped not in cases:
        cases[1] = dropped
    assert main(["crossval", str(cohort), "--out", str(run), "--preset", str(cv["preset"])]) == 0
    assert "skipped (finished earlier) [0, 1]" in capsys.readouterr().err.replace("\n", " ")
    args = ["report", str(run)] + [a for c in cases for a in ("--case", c)]
    assert main(args) == 0
    report = run / "report"
    index = (report / "index.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert links and all((report / link).resolve().exists() for link in links)
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert sorted(link for link in links if link.endswith(".png")) == pngs
    for case in cases:
        assert f"overlay_{case}.png" in pngs
    assert f"confidence_{dropped}.png" not in pngs
    assert {"training_curves.png", "dpc_by_type.png"} <= set(pngs)
    assert "| paper |" in index  # Table 1 is embedded


def test_fold_selection():
    assert select_folds([2, 0, 1], None) == [0, 1, 2]
    assert select_folds([2, 0, 1], 2) == [0, 1]
    assert select_folds([0, 1, 2], [2]) == [2]
    for bad in (0, 4, [3]):
        with pytest.raises(ConfigError):
            select_folds([0, 1, 2], bad)


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    config = load_config("cpu-small", TINY_OVERRIDES)
    with pytest.raises(InputError, match="dataset.json"):
        crossval(config, tmp_path, tmp_path / "run")
    with pytest.raises(ConfigError, match="tumour task"):
        crossval(load_config("cpu-small", ["train.task=liver"]), tmp_path, tmp_path / "run")
    assert main(["crossval", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing: not a dataset folder" in errors[0]
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished cross-validation run" in capsys.readouterr().err


def test_a_run_saved_before_a_config_key_existed_matches_that_keys_default(tmp_path):
    """A run folder written before `data.mask_jitter` existed ran at its default (0): it is the same run;
    a run saved with another value is still refused, naming the key."""
    import yaml

    from mpliver.experiments.crossval import check_run_config
    from mpliver.training.config import load_config
    from mpliver.training.run_info import CONFIG_YAML

    config = load_config("cpu-small")
    old = config.to_dict()
    del old["data"]["mask_jitter"]
    (tmp_path / CONFIG_YAML).write_text(yaml.safe_dump(old))
    check_run_config(tmp_path, config)  # no error
    old["data"]["mask_jitter"] = 2
    (tmp_path / CONFIG_YAML).write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="data.mask_jitter=2, not 0"):
        check_run_config(tmp_path, config)
