"""`mpliver evaluate` end to end on a 3-case folder (cohort fixture in conftest.py)."""

import csv
import json

import numpy as np

from mpliver.cli import main
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import write_nifti


def test_cli_writes_the_tables_and_prints_the_summary(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for name in ("per_case.csv", "summary.json", "summary.md", "per_type.csv", "per_type.md"):
        assert (out / name).is_file(), name
    header = next(csv.reader((out / "per_case.csv").open()))
    assert header[:7] == ["case", "tumor_type", "dice", "voe", "rvd", "assd", "rmsd"]
    summary = json.loads((out / "summary.json").read_text())
    expected = {"dpc", "dg", "voe", "rvd", "assd", "rmsd", "dpc_sd", "assd_undefined", "n_cases"}
    assert expected <= summary.keys()
    assert "DPC (%)" in captured.out and "1 undefined" in captured.out and "per tumour type" in captured.out


def test_cli_off_grid_prediction_is_one_line_and_exit_2(cohort, tmp_path, capsys):
    write_nifti(cohort.preds / "c1.nii.gz", np.zeros((12, 12, 9), np.uint8),
                Geometry.from_spacing((12, 12, 9), (0.7, 0.9, 2.5)))
    rc = main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "c1.nii.gz" in err and "not on the grid" in err
    assert len(err.splitlines()) == 1


def test_cli_missing_prediction(cohort, tmp_path, capsys):
    (cohort.preds / "c2.nii.gz").unlink()
    assert main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(tmp_path / "a")]) == 2
    assert "no prediction for case c2" in capsys.readouterr().err
    rc = main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(tmp_path / "b"),
               "--missing-as-empty"])
    assert rc == 0
    assert "scored as empty" in capsys.readouterr().out


def test_cli_structure_liver_scores_liver_and_tumour_together(tmp_path, capsys):
    geom = Geometry.from_spacing((10, 10, 4), (1.0, 1.0, 2.0))
    label = np.zeros(geom.shape, np.uint8)
    label[2:8, 2:8, :] = 1          # 6 x 6 x 4 = 144 liver voxels ...
    label[4:6, 4:6, 1:3] = 2        # ... of which 8 are tumour
    pred = np.zeros(geom.shape, np.uint8)
    pred[2:8, 2:6, :] = 1           # 6 x 4 x 4 = 96 voxels, all inside the reference liver
    for folder, arr in (("labels", label), ("preds", pred)):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "c0.nii.gz", arr, geom)
    args = ["evaluate", str(tmp_path / "preds"), str(tmp_path / "labels"), "--out"]
    assert main([*args, str(tmp_path / "liver"), "--structure", "liver"]) == 0
    liver = json.loads((tmp_path / "liver" / "summary.json").read_text())
    assert liver["dpc"] == np.float64(100 * 2 * 96 / (144 + 96))  # 80 %
    assert main([*args, str(tmp_path / "tumor")]) == 0
    assert json.loads((tmp_path / "tumor" / "summary.json").read_text())["dpc"] == 0.0  # no tumour predicted
    capsys.readouterr()
    assert main([*args, str(tmp_path / "x"), "--structure", "spleen"]) == 2
    assert "--structure must be tumor or liver" in capsys.readouterr().err


def _images_folder(cohort, name="imagesTr"):
    """CT images of the cohort's cases (CASE_0000.nii.gz, HU with air at -1000)."""
    folder = cohort.root / name
    for case in ("c1", "c2", "c3"):
        image = np.full(cohort.geometry.shape, -1000.0, np.float32)
        image[2:-2, 2:-2, 1:-1] = 60.0
        write_nifti(folder / f"{case}_0000.nii.gz", image, cohort.geometry)
    return folder


def test_cli_images_given_as_labels_get_a_message_that_says_so(cohort, tmp_path, capsys):
    images = _images_folder(cohort)
    for pred, label in ((cohort.preds, images), (images, cohort.labels)):
        assert main(["evaluate", str(pred), str(label), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(images) in err
        assert "holds images (c1_0000.nii.gz, ...), not" in err and "PRED_DIR LABEL_DIR" in err
    # the name alone does not decide: a folder of CT images called anything else is recognised too
    other = _images_folder(cohort, "ct")
    assert main(["evaluate", str(cohort.preds), str(other), "--out", str(tmp_path / "out")]) == 2
    assert "holds images" in capsys.readouterr().err


def test_cli_swapped_prediction_and_label_folders(cohort, tmp_path, capsys):
    (cohort.preds / "c1_uncertainty.nii.gz").write_bytes(b"")  # a `predict` output folder
    (cohort.preds / "c1_lesions.json").write_text("{}")
    assert main(["evaluate", str(cohort.labels), str(cohort.preds), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "were PRED_DIR and LABEL_DIR swapped?" in err
    assert main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(tmp_path / "ok")]) == 0


def test_cli_labels_of_a_cohort_numbered_like_channels_are_labels(cohort, tmp_path, capsys):
    """Phantom cases are named PHANTOM_0000: label files that look like channel 0 are still labels."""
    for folder in (cohort.labels, cohort.preds):
        for case in ("c1", "c2", "c3"):
            (folder / f"{case}.nii.gz").rename(folder / f"PHANTOM_000{case[1]}.nii.gz")
    rc = main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
