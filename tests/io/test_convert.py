"""`mpliver convert` into the case layout: DICOM phases with NIfTI / DICOM-SEG labels, CSV batches, appending,
and every bad input of issue 2 through the command line (exit 2, one line naming the file, nothing left)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.io.geometry import Geometry
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti, write_nifti


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line_error(err: str, name: str) -> None:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and name in lines[0], err


def _nothing_left(parent, out) -> None:
    assert not out.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(".")]  # no staging folders


def test_convert_dicom_case_with_nifti_label(tmp_path, study, capsys):
    out = tmp_path / "ds"
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        study["label"],
        "--case-id",
        "liver01",
        "--tumor-type",
        "hcc",
        "--out",
        out,
    )
    assert code == 0, err
    ds = Dataset(out)
    assert ds.phases == ["PV", "ART"] and ds.validate(check_values=True) == ["liver01"]
    pv, pv_geom = read_nifti(ds.image_path("liver01", "PV"))
    np.testing.assert_array_equal(pv, study["pv_array"])
    np.testing.assert_allclose(pv_geom.affine, study["geom"].affine, atol=1e-4)
    art, art_geom = read_nifti(ds.image_path("liver01", "ART"))
    np.testing.assert_array_equal(art, study["art_array"])
    np.testing.assert_allclose(art_geom.affine, study["art_geom"].affine, atol=1e-4)  # ART keeps its grid
    label, _ = read_nifti(ds.label_path("liver01"))
    np.testing.assert_array_equal(label, read_nifti(study["label"])[0])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 1 and meta["cases"] == {"liver01": {"tumor_type": "HCC"}}


@pytest.mark.slow  # highdicom import and SEG encoding: a few seconds
def test_convert_with_dicom_seg_label(tmp_path, study, capsys):
    from mpliver.io.dicom_seg import write_dicom_seg

    label = read_nifti(study["label"])[0]
    write_dicom_seg(tmp_path / "seg.dcm", label, study["pv"])
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        tmp_path / "seg.dcm",
        "--out",
        tmp_path / "ds",
    )
    assert code == 0, err
    ds = Dataset(tmp_path / "ds")
    assert ds.cases() == ["case_001"]
    np.testing.assert_array_equal(read_nifti(ds.label_path("case_001"))[0], label)


def test_reoriented_nifti_label_is_placed_exactly(tmp_path, study, capsys):
    """A label stored with another axis order (j flipped, like TotalSegmentator) lands on the same voxels."""
    label = read_nifti(study["label"])[0]
    g = study["geom"]
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, g.shape[1] - 1  # index j' = n-1-j
    write_nifti(tmp_path / "flipped.nii.gz", label[:, ::-1, :].copy(), Geometry(g.affine @ flip, g.shape))
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        tmp_path / "flipped.nii.gz",
        "--out",
        tmp_path / "ds",
    )
    assert code == 0, err
    np.testing.assert_array_equal(read_nifti(Dataset(tmp_path / "ds").label_path("case_001"))[0], label)


def test_csv_batch_then_append_one_case(tmp_path, study, capsys):
    csv_path = tmp_path / "src" / "cases.csv"
    csv_path.write_text(
        "case,pv,art,label,tumor_type\na1,pv,art,label.nii.gz,metastasis\na2,pv,art,,\n"
    )  # no label: a test case
    out = tmp_path / "ds"
    code, err = _run(capsys, "convert", "--from-csv", csv_path, "--out", out)
    assert code == 0, err
    ds = Dataset(out)
    assert ds.cases("Tr") == ["a1"] and ds.cases("Ts") == ["a2"] and ds.tumor_type("a1") == "METS"
    code, err = _run(
        capsys, "convert", "--pv", study["pv"], "--art", study["art"], "--label", study["label"], "--out", out
    )
    assert code == 0, err
    ds = Dataset(out)
    assert ds.cases("Tr") == ["a1", "case_001"] and ds.meta["numTraining"] == 2
    assert ds.tumor_type("a1") == "METS" and ds.validate() == ["a1", "case_001"]
    # The same id again is refused, then replaced with --overwrite.
    again = ("convert", "--pv", study["pv"], "--art", study["art"], "--case-id", "a1", "--out", out)
    code, err = _run(capsys, *again)
    assert code == 2
    _one_line_error(err, str(out))
    code, err = _run(capsys, *again, "--overwrite")
    assert code == 0, err
    ds = Dataset(out)
    assert ds.cases("Tr") == ["case_001"] and ds.cases("Ts") == ["a1", "a2"] and ds.meta["numTraining"] == 1


# ---- bad input -----------------------------------------------------------------------------------
def test_missing_phase(tmp_path, study, capsys):
    code, err = _run(capsys, "convert", "--pv", study["pv"], "--out", tmp_path / "ds")
    assert code == 2 and "missing phase ART" in err
    _one_line_error(err, "--art")
    code, err = _run(
        capsys, "convert", "--pv", study["pv"], "--art", tmp_path / "nope", "--out", tmp_path / "ds"
    )
    assert code == 2
    _one_line_error(err, str(tmp_path / "nope"))
    csv_path = tmp_path / "src" / "cases.csv"
    csv_path.write_text("case,pv,art\nx,pv,\n")
    code, err = _run(capsys, "convert", "--from-csv", csv_path, "--out", tmp_path / "ds")
    assert code == 2 and "missing phase ART" in err
    _one_line_error(err, str(csv_path))
    _nothing_left(tmp_path, tmp_path / "ds")


def test_label_not_on_pv_grid(tmp_path, study, capsys):
    label = read_nifti(study["label"])[0]
    g = study["geom"]
    off = Geometry(g.affine @ np.diag([1.0, 1.0, 0.5, 1.0]), g.shape)  # half the slice spacing
    write_nifti(tmp_path / "off.nii.gz", label, off)
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        tmp_path / "off.nii.gz",
        "--out",
        tmp_path / "ds",
    )
    assert code == 2 and "not on the PV grid" in err
    _one_line_error(err, "off.nii.gz")
    _nothing_left(tmp_path, tmp_path / "ds")
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        tmp_path / "off.nii.gz",
        "--resample-label",
        "--out",
        tmp_path / "ds",
    )
    assert code == 0, err
    resampled = read_nifti(Dataset(tmp_path / "ds").label_path("case_001"))[0]
    assert set(np.unique(resampled)) <= {0, 1, 2} and resampled.shape == g.shape


def test_non_hu_volume(tmp_path, study, capsys):
    write_nifti(
        tmp_path / "norm.nii.gz",
        np.random.default_rng(0).uniform(0, 1, (10, 10, 4)).astype(np.float32),
        Geometry.from_spacing((10, 10, 4), (1, 1, 1), origin=(5.0, -5.0, 20.0)),  # not a lost header
    )
    code, err = _run(
        capsys, "convert", "--pv", tmp_path / "norm.nii.gz", "--art", study["art"], "--out", tmp_path / "ds"
    )
    assert code == 2 and "Hounsfield" in err
    _one_line_error(err, "norm.nii.gz")
    _nothing_left(tmp_path, tmp_path / "ds")


def test_truncated_nifti_and_dicom(tmp_path, study, capsys):
    write_nifti(tmp_path / "pv.nii.gz", study["pv_array"], study["geom"])
    data = (tmp_path / "pv.nii.gz").read_bytes()
    (tmp_path / "pv.nii.gz").write_bytes(data[: len(data) // 2])
    code, err = _run(
        capsys, "convert", "--pv", tmp_path / "pv.nii.gz", "--art", study["art"], "--out", tmp_path / "ds"
    )
    assert code == 2
    _one_line_error(err, "pv.nii.gz")
    victim = sorted(study["art"].iterdir())[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])  # cut into the pixel data
    code, err = _run(capsys, "convert", "--pv", study["pv"], "--art", study["art"], "--out", tmp_path / "ds")
    assert code == 2
    _one_line_error(err, victim.name)
    _nothing_left(tmp_path, tmp_path / "ds")


def test_unknown_tumour_type(tmp_path, study, capsys):
    csv_path = tmp_path / "src" / "cases.csv"
    csv_path.write_text("case,pv,art,label,tumor_type\nx,pv,art,label.nii.gz,angiosarcoma\n")
    code, err = _run(capsys, "convert", "--from-csv", csv_path, "--out", tmp_path / "ds")
    assert code == 2 and "unknown tumour type 'angiosarcoma'" in err
    _one_line_error(err, str(csv_path))
    _nothing_left(tmp_path, tmp_path / "ds")
    code, err = _run(
        capsys, "convert", "--from-csv", csv_path, "--allow-other-types", "--out", tmp_path / "ds"
    )
    assert code == 0, err
    assert Dataset(tmp_path / "ds").tumor_type("x") == "angiosarcoma"


def test_output_folder_with_a_different_dataset(tmp_path, study, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("my other project")
    args = ("convert", "--pv", study["pv"], "--art", study["art"], "--label", study["label"], "--out", out)
    code, err = _run(capsys, *args)
    assert code == 2 and "--overwrite" in err
    _one_line_error(err, str(out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # untouched
    # A PV-only dataset is a different dataset too.
    (out / "notes.txt").unlink()
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "PV"},
                "labels": {"background": 0, "liver": 1, "tumor": 2},
                "numTraining": 0,
                "file_ending": ".nii.gz",
            }
        )
    )
    code, err = _run(capsys, *args)
    assert code == 2
    _one_line_error(err, str(out))
    code, err = _run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert Dataset(out).phases == ["PV", "ART"] and Dataset(out).validate() == ["case_001"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "args",
    [
        ("convert", "--out", "x"),
        ("convert", "ds", "--pv", "a", "--art", "b", "--out", "x"),
        ("convert", "--from-csv", "c.csv", "--pv", "a", "--out", "x"),
        ("convert", "--to", "zarr", "--out", "x"),
    ],
)
def test_inconsistent_options_are_one_line_errors(tmp_path, capsys, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.slow
def test_real_dicom_with_totalsegmentator_label(tmp_path, shared_data, capsys):
    """The real JPEG 2000 series plus TotalSegmentator's label (liver 5 -> 1, reoriented) through the CLI."""
    ts = shared_data / "totalseg_example"
    out = tmp_path / "ds"
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        ts / "pv_dicom",
        "--art",
        ts / "pv_dicom",
        "--label",
        ts / "pv_dicom_seg.nii.gz",
        "--label-map",
        "5=1",
        "--case-id",
        "ts",
        "--out",
        out,
    )
    assert code == 0, err
    case = Dataset(out).load_case("ts")
    assert set(np.unique(case.label)) == {0, 1}
    assert 70 <= np.median(case.phases["PV"][case.label == 1]) <= 110


def test_label_values_other_than_012_refused_unless_mapped(tmp_path, study, capsys):
    ts_like = (read_nifti(study["label"])[0] > 0).astype(np.uint8) * 5  # TotalSegmentator: liver = 5
    write_nifti(tmp_path / "ts.nii.gz", ts_like, study["geom"])
    args = ("convert", "--pv", study["pv"], "--art", study["art"], "--label", tmp_path / "ts.nii.gz")
    code, err = _run(capsys, *args, "--out", tmp_path / "ds")
    assert code == 2 and "label values must be 0/1/2" in err
    _one_line_error(err, "ts.nii.gz")
    code, err = _run(capsys, *args, "--label-map", "5=1", "--out", tmp_path / "ds")
    assert code == 0, err
    np.testing.assert_array_equal(
        read_nifti(Dataset(tmp_path / "ds").label_path("case_001"))[0], ts_like // 5
    )


def test_series_choice_in_a_mixed_folder(tmp_path, study, capsys):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(study["pv"], mixed)
    for p in study["art"].iterdir():
        shutil.copy(p, mixed / f"art_{p.name}")
    code, err = _run(capsys, "convert", "--pv", mixed, "--art", study["art"], "--out", tmp_path / "ds")
    assert code == 2 and "2 series found" in err
    _one_line_error(err, str(mixed))
    import pydicom

    uid = pydicom.dcmread(next(study["pv"].iterdir())).SeriesInstanceUID
    code, err = _run(
        capsys, "convert", "--pv", mixed, "--pv-series", uid, "--art", study["art"], "--out", tmp_path / "ds"
    )
    assert code == 0, err
    pv, _ = read_nifti(Dataset(tmp_path / "ds").image_path("case_001", "PV", "Ts"))
    np.testing.assert_array_equal(pv, study["pv_array"])


@pytest.mark.parametrize("bad", ["5", "5=x", "5=3"])
def test_bad_label_map(tmp_path, study, capsys, bad):
    code, err = _run(
        capsys,
        "convert",
        "--pv",
        study["pv"],
        "--art",
        study["art"],
        "--label",
        study["label"],
        "--label-map",
        bad,
        "--out",
        tmp_path / "ds",
    )
    assert code == 2 and "--label-map" in err and len(err.strip().splitlines()) == 1


def test_replacing_a_case_keeps_cases_with_similar_ids(tmp_path, study, capsys):
    out = tmp_path / "ds"
    base = ("convert", "--pv", study["pv"], "--art", study["art"], "--label", study["label"], "--out", out)
    assert _run(capsys, *base, "--case-id", "c_0001")[0] == 0
    assert _run(capsys, *base, "--case-id", "c")[0] == 0
    code, err = _run(capsys, *base, "--case-id", "c", "--overwrite")
    assert code == 0, err
    ds = Dataset(out)
    assert ds.cases() == ["c", "c_0001"] and ds.validate() == ["c", "c_0001"]
