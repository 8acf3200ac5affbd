"""Study folders and .zip archives, the series selector, anonymised UIDs, enhanced CT and single files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from helpers import dicom_quirks as q
from mpliver.cli import main
from mpliver.errors import InputError
from mpliver.io.dicom import (
    check_dicom_seg_source,
    read_dicom_series,
    scan_series,
    series_instance_uids,
    study_rows,
)
from mpliver.io.dicom_scan import is_dicom_file
from mpliver.io.dicom_study import Selector, parse_source, scan_study


def assert_same_volume(a, b) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1].affine, b[1].affine)


@pytest.fixture
def study(phantom_dicom, tmp_path):
    """A study tree (PV two levels down, ART one level down, two non-DICOM files) and its .zip."""
    root = tmp_path / "study"
    q.copy_series(phantom_dicom["PV"], root / "patient" / "pv")
    q.copy_series(phantom_dicom["ART"], root / "art")
    (root / "README.txt").write_text("exported by a PACS")
    (root / "notes").write_text("not DICOM either")
    return root, q.zip_folder(root, tmp_path / "study.zip")


def test_parse_source():
    assert parse_source("a/b") == (parse_source("a/b")[0], Selector())
    path, sel = parse_source("x/study.zip::series=PV 1.5,group=2")
    assert str(path) == "x/study.zip" and sel == Selector("PV 1.5", "2")
    with pytest.raises(InputError, match="bad selector 'acq=2'"):
        parse_source("x::acq=2")


@pytest.mark.parametrize("container", ["folder", "zip"])
def test_study_with_two_series_refused_then_chosen_by_number_uid_or_text(phantom_dicom, study, container):
    source = study[0] if container == "folder" else study[1]
    pv, art = read_dicom_series(phantom_dicom["PV"]), read_dicom_series(phantom_dicom["ART"])
    with pytest.raises(InputError) as err:
        read_dicom_series(source)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{source}: 2 series found, choose one with {source}::series=")
    assert '3 "PV" (12 files' in msg and '2 "ART" (' in msg
    pv_uid = str(pydicom.dcmread(next(phantom_dicom["PV"].iterdir())).SeriesInstanceUID)
    assert_same_volume(read_dicom_series(f"{source}::series=3"), pv)
    assert_same_volume(read_dicom_series(f"{source}::series={pv_uid}"), pv)
    assert_same_volume(read_dicom_series(f"{source}::series=art"), art)  # description, any case
    assert_same_volume(read_dicom_series(source, series_uid="PV"), pv)  # convert's --pv-series
    art_slices = read_dicom_series(phantom_dicom["ART"])[0].shape[2]
    study = scan_study(parse_source(source)[0])
    assert sorted(len(s.files) for s in study.values()) == sorted([art_slices, 12])
    with pytest.raises(InputError, match="series 'liver' matches no series"):
        read_dicom_series(f"{source}::series=liver")


def test_dicom_ls_lists_series_with_selectors_that_read_them(phantom_dicom, study, capsys):
    root, _ = study
    assert main(["dicom", "ls", str(root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert header[:4] == ["select", "uid", "number", "description"]
    assert {"slices", "spacing_mm", "z_mm", "time"} <= set(header)
    assert len(lines) == 3
    rows = {r["description"]: r for r in study_rows(root)}
    assert rows["PV"]["slices"] == "12" and rows["PV"]["spacing_mm"] == "6x6x8"
    z = phantom_dicom["case"].geometries["PV"]
    z0, z1 = sorted((z.origin[2], z.origin[2] + 11 * z.spacing[2]))
    assert rows["PV"]["z_mm"] == f"{z0:.1f} .. {z1:.1f}"
    assert_same_volume(read_dicom_series(rows["ART"]["select"]), read_dicom_series(phantom_dicom["ART"]))


def test_convert_csv_picks_series_of_one_zip(phantom_dicom, study, tmp_path):
    from mpliver.io.nifti import read_nifti

    _, archive = study
    csv = tmp_path / "cases.csv"
    csv.write_text(f"case,pv,art\nc1,{archive.name}::series=PV,{archive.name}::series=2\n")
    assert main(["convert", "--from-csv", str(csv), "--out", str(tmp_path / "ds")]) == 0
    for i, name in enumerate(("PV", "ART")):
        array, geom = read_nifti(tmp_path / "ds" / "imagesTs" / f"c1_{i:04d}.nii.gz")
        ref, ref_geom = read_dicom_series(phantom_dicom[name])
        np.testing.assert_array_equal(array, ref)
        np.testing.assert_allclose(geom.affine, ref_geom.affine, atol=1e-6)


def test_dicom_ls_real_series_shows_contrast_and_generated_uid(shared_data, capsys):
    folder = shared_data / "totalseg_example" / "pv_dicom"
    (row,) = study_rows(folder)
    assert row["uid"].endswith("(generated)") and row["contrast"] == "APPLIED"
    assert row["description"] == "CT Body 3.0" and row["slices"] == "20"
    assert row["z_mm"] == "-804.5 .. -766.5" and row["time"] == "14:03:52-14:03:53"


# ---- anonymised UIDs -----------------------------------------------------------------------------
def test_real_anonymised_series_gets_sop_uids_from_file_meta(shared_data):
    folder = shared_data / "totalseg_example" / "pv_dicom"
    series = check_dicom_seg_source(folder)
    metas = {}
    for p in folder.iterdir():
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds.SOPInstanceUID == "" and ds.SeriesInstanceUID == ""  # the fixture really is anonymised
        metas[p] = str(ds.file_meta.MediaStorageSOPInstanceUID)
    assert list(series_instance_uids(series)) == [metas[p] for p in series.paths]
    assert {str(h.SOPClassUID) for h in series.headers} == {"1.2.840.10008.5.1.4.1.1.2"}
    again = scan_series(folder)  # generated study / series UIDs are the same on every read
    assert again.series_uid == series.series_uid and series.series_uid.startswith("1.2.")
    assert {str(h.StudyInstanceUID) for h in again.headers} == {str(series.headers[0].StudyInstanceUID)}


def test_phantom_with_empty_uids_reads_the_same(phantom_dicom, tmp_path):
    q.anonymise_uids(phantom_dicom["PV"], tmp_path / "anon")
    assert_same_volume(read_dicom_series(tmp_path / "anon"), read_dicom_series(phantom_dicom["PV"]))


def test_two_anonymised_series_in_one_folder_stay_apart(phantom_dicom, tmp_path):
    """Empty SeriesInstanceUIDs everywhere: number and description still tell the series apart."""
    q.anonymise_uids(phantom_dicom["PV"], tmp_path / "mixed")
    for p in q.anonymise_uids(phantom_dicom["ART"], tmp_path / "art"):
        p.rename(tmp_path / "mixed" / f"art_{p.name}")
    with pytest.raises(InputError, match="2 series found"):
        read_dicom_series(tmp_path / "mixed")
    assert_same_volume(read_dicom_series(f"{tmp_path / 'mixed'}::series=ART"),
                       read_dicom_series(phantom_dicom["ART"]))
    assert_same_volume(read_dicom_series(f"{tmp_path / 'mixed'}::series=3"),
                       read_dicom_series(phantom_dicom["PV"]))


def test_no_sop_uid_anywhere_is_refused_for_a_seg(phantom_dicom, tmp_path):
    files = q.anonymise_uids(phantom_dicom["PV"], tmp_path / "anon")
    ds = pydicom.dcmread(files[0])
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    ds.save_as(files[0])
    with pytest.raises(InputError, match="no SOPInstanceUID, neither in the data set nor in the file meta"):
        check_dicom_seg_source(tmp_path / "anon")


# ---- enhanced CT and single files -----------------------------------------------------------------
def test_enhanced_ct_reads_like_its_single_frame_source(phantom_dicom, tmp_path):
    path = q.enhanced_ct(phantom_dicom["PV"], tmp_path / "enh" / "volume.dcm")
    clean = read_dicom_series(phantom_dicom["PV"])
    assert pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames == 12
    assert_same_volume(read_dicom_series(tmp_path / "enh"), clean)
    assert_same_volume(read_dicom_series(path), clean)  # the one file is a whole series
    with pytest.raises(InputError, match="enhanced \\(multi-frame\\) CT is read but a SEG of it is not"):
        check_dicom_seg_source(path)


def test_a_seg_of_the_single_frame_series_reads_onto_its_enhanced_ct(phantom_dicom, tmp_path):
    """Frames are placed from the planes the scan parsed, which enhanced CT has per frame, not per file."""
    from mpliver.io.dicom_seg import read_dicom_seg, write_dicom_seg

    path = q.enhanced_ct(phantom_dicom["PV"], tmp_path / "enh" / "volume.dcm")
    label = phantom_dicom["case"].label
    seg = write_dicom_seg(tmp_path / "seg.dcm", label, phantom_dicom["PV"])
    on_enhanced, geom, _ = read_dicom_seg(seg, path, allow_mismatch=True)  # the converter made new UIDs
    np.testing.assert_array_equal(on_enhanced, label)
    np.testing.assert_array_equal(geom.affine, read_dicom_series(phantom_dicom["PV"])[1].affine)


def test_real_series_as_enhanced_ct(shared_data, tmp_path):
    """The real JPEG 2000 slices converted to one enhanced CT object: same voxels and geometry."""
    folder = shared_data / "totalseg_example" / "pv_dicom"
    q.enhanced_ct(folder, tmp_path / "enh" / "volume.dcm")
    assert_same_volume(read_dicom_series(tmp_path / "enh"), read_dicom_series(folder))


def test_single_file_without_suffix_asks_for_the_folder(shared_data, tmp_path, capsys):
    src = next((shared_data / "totalseg_example" / "pv_dicom").iterdir())
    assert src.suffix == "" or not src.suffix.lower() == ".dcm"
    assert is_dicom_file(src) and not is_dicom_file(shared_data / "totalseg_example" / "pv_dicom_seg.nii.gz")
    assert main(["convert", "--pv", str(src), "--art", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {src}: input is a single DICOM file; give the folder of its series ({src.parent})"


def test_non_dicom_files_in_a_series_folder_are_skipped(phantom_dicom, tmp_path):
    q.copy_series(phantom_dicom["PV"], tmp_path / "s")
    (tmp_path / "s" / "export.log.1").write_text("a PACS log line\n" * 10)
    (tmp_path / "s" / "IMAGES").mkdir()  # an empty sub-folder
    assert_same_volume(read_dicom_series(tmp_path / "s"), read_dicom_series(phantom_dicom["PV"]))
