"""evaluate_folders on a 3-case cohort on disk: values computed by hand (see conftest.py), files, errors."""

import csv
import json
import math

import numpy as np
import pytest

from mpliver.errors import InputError
from mpliver.evaluation.evaluate import EvaluationWarning, evaluate_folders, read_per_case_csv
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import write_nifti

DICE = {"c1": 75.0, "c2": 100 * 54 / 81, "c3": 0.0}
VOE = {"c1": 40.0, "c2": 50.0, "c3": 100.0}
RVD = {"c1": 0.0, "c2": -50.0, "c3": -100.0}


def test_summary_and_per_case_values_by_hand(cohort, tmp_path):
    out = tmp_path / "out"
    summary = evaluate_folders(cohort.preds, cohort.labels, out)
    assert summary["n_cases"] == 3
    assert summary["dpc"] == pytest.approx(sum(DICE.values()) / 3)
    assert summary["dg"] == pytest.approx(100 * 2 * (48 + 27 + 0) / (128 + 81 + 18))
    assert summary["voe"] == pytest.approx(sum(VOE.values()) / 3)
    assert summary["rvd"] == pytest.approx(-50.0)
    assert summary["assd_undefined"] == 1 and summary["rmsd_undefined"] == 1
    assert summary["lesion_recall"] == pytest.approx((100 + 50 + 0) / 3)
    assert summary["lesion_precision"] == pytest.approx(100.0) and summary["lesion_precision_undefined"] == 1
    assert summary["n_missing_predictions"] == 0

    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("dpc", "dg", "voe", "rvd", "assd", "rmsd"):
        assert isinstance(on_disk[key], float)
        if key != "dg":
            assert f"{key}_sd" in on_disk and isinstance(on_disk[f"{key}_undefined"], int)
    for key in ("lesion_recall", "lesion_precision", "lesion_f1", "n_cases"):
        assert key in on_disk
    assert not any(isinstance(v, (dict, list)) for v in on_disk.values())  # flat

    with (out / "per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() >= {"case", "tumor_type", "dice", "voe", "rvd", "assd", "rmsd", "lesion_recall",
                              "lesion_precision", "lesion_f1"}
    by_case = {r["case"]: r for r in rows}
    assert [by_case[c]["tumor_type"] for c in ("c1", "c2", "c3")] == ["HCC", "FNH", "cyst"]
    for case in DICE:
        assert float(by_case[case]["dice"]) == pytest.approx(DICE[case])
        assert float(by_case[case]["voe"]) == pytest.approx(VOE[case])
        assert float(by_case[case]["rvd"]) == pytest.approx(RVD[case])
    assert float(by_case["c1"]["assd"]) == pytest.approx(0.25)  # spacing from the header: 0.7 mm along i
    assert float(by_case["c1"]["rmsd"]) == pytest.approx(math.sqrt(40 * 0.49 / 112))
    assert by_case["c3"]["assd"] == "" and by_case["c3"]["rmsd"] == ""  # undefined: an empty cell
    assert float(by_case["c2"]["lesion_recall"]) == pytest.approx(50.0)

    per_type = list(csv.DictReader((out / "per_type.csv").open()))
    assert [r["tumor_type"] for r in per_type] == ["FNH", "HCC", "cyst"]
    assert float(per_type[1]["dpc"]) == pytest.approx(75.0)
    assert "| HCC | 1 | 75.00" in (out / "per_type.md").read_text()
    assert (out / "summary.md").exists()
    assert not list(out.glob(".*"))  # atomic writes leave no temporary file

    back = read_per_case_csv(out / "per_case.csv")
    assert math.isnan(back[2]["assd"]) and back[0]["ref_voxels"] == 64 and back[1]["tumor_type"] == "FNH"


def test_types_from_explicit_dataset_or_mapping_or_none(cohort, tmp_path):
    labels = tmp_path / "labels_elsewhere"
    labels.mkdir()
    for p in cohort.labels.iterdir():
        (labels / p.name).write_bytes(p.read_bytes())
    s = evaluate_folders(cohort.preds, labels, tmp_path / "none")
    assert s["n_cases"] == 3 and not (tmp_path / "none" / "per_type.csv").exists()
    evaluate_folders(cohort.preds, labels, tmp_path / "explicit", dataset=cohort.root)
    assert (tmp_path / "explicit" / "per_type.csv").exists()
    evaluate_folders(cohort.preds, labels, tmp_path / "mapping", types={"c1": "HEM"})
    rows = list(csv.DictReader((tmp_path / "mapping" / "per_type.csv").open()))
    assert [(r["tumor_type"], r["n_cases"]) for r in rows] == [("HEM", "1"), ("unknown", "2")]


def test_missing_prediction_is_an_error_or_counted_as_empty(cohort, tmp_path):
    (cohort.preds / "c1.nii.gz").unlink()
    with pytest.raises(InputError, match="no prediction for case c1") as exc:
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    assert "\n" not in str(exc.value)
    s = evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out", missing_as_empty=True)
    assert s["n_missing_predictions"] == 1
    assert s["dpc"] == pytest.approx((0 + DICE["c2"] + 0) / 3)
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "out" / "per_case.csv").open())}
    assert rows["c1"]["missing_prediction"] == "1" and float(rows["c1"]["dice"]) == 0.0


def test_extra_predictions_are_ignored_with_a_warning(cohort, tmp_path):
    write_nifti(cohort.preds / "zz.nii.gz", np.zeros((12, 12, 8), np.uint8), cohort.geometry)
    with pytest.warns(EvaluationWarning, match="zz"):
        s = evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    assert s["n_cases"] == 3


def test_off_grid_prediction_names_the_file(cohort, tmp_path):
    shifted = Geometry.from_spacing((12, 12, 8), (0.7, 0.9, 2.5), origin=(-20.0, 10.0, 7.5))
    write_nifti(cohort.preds / "c2.nii.gz", np.zeros((12, 12, 8), np.uint8), shifted)
    with pytest.raises(InputError, match=r"c2\.nii\.gz.*not on the grid") as exc:
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    assert "\n" not in str(exc.value)


def test_bad_inputs(cohort, tmp_path):
    write_nifti(cohort.preds / "c3.nii.gz", np.full((12, 12, 8), 3, np.uint8), cohort.geometry)
    with pytest.raises(InputError, match=r"c3\.nii\.gz.*0/1/2"):
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    with pytest.raises(InputError, match="prediction folder not found"):
        evaluate_folders(tmp_path / "nope", cohort.labels, tmp_path / "out")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "a_file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no label maps"):
        evaluate_folders(cohort.preds, tmp_path / "empty", tmp_path / "out")


def test_subset_of_cases_and_liver_foreground(cohort, tmp_path):
    (cohort.preds / "c3.nii.gz").unlink()  # not asked for: no error
    s = evaluate_folders(cohort.preds, cohort.labels, tmp_path / "sub", cases=["c1"])
    assert s["n_cases"] == 1 and s["dpc"] == pytest.approx(75.0)
    with pytest.raises(InputError, match="no label for case zz"):
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "sub", cases=["zz"])
    # Liver = labels 1 and 2. c1: the liver block (10x10x6 = 600 voxels) is the same in both maps, the tumour
    # lies inside it in both, so the liver masks are identical.
    liver = evaluate_folders(cohort.preds, cohort.labels, tmp_path / "liver", cases=["c1"], foreground=(1, 2))
    assert liver["dpc"] == pytest.approx(100.0) and liver["assd"] == pytest.approx(0.0)
    rows = list(csv.DictReader((tmp_path / "liver" / "per_case.csv").open()))
    assert rows[0]["ref_voxels"] == "600"


def test_tumour_types_are_normalised(cohort, tmp_path):
    meta = json.loads((cohort.root / "dataset.json").read_text())
    meta["cases"]["c1"]["tumor_type"] = "haemangioma"
    meta["cases"]["c2"]["tumor_type"] = "hcc"
    (cohort.root / "dataset.json").write_text(json.dumps(meta))
    evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "per_type.csv").open()))
    assert [r["tumor_type"] for r in rows] == ["HCC", "HEM", "cyst"]


def test_a_foreign_dataset_json_beside_the_labels_is_not_an_error(cohort, tmp_path):
    (cohort.root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {}}))
    s = evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out")
    assert s["n_cases"] == 3 and not (tmp_path / "out" / "per_type.csv").exists()
    from mpliver.errors import DatasetError

    with pytest.raises(DatasetError, match="dataset.json"):  # but an explicit --dataset must be valid
        evaluate_folders(cohort.preds, cohort.labels, tmp_path / "out", dataset=cohort.root)
