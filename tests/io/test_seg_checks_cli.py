"""DICOM-SEG labels through `mpliver convert`, built from the real PV series in ../shared/data and from a
phantom case written as DICOM: frames that all name one source slice are placed by position (the label
equals the clean one voxel for voxel); a SEG of another patient or frame of reference is refused in one
line unless --label-mismatch-ok."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mpliver.cli import main
from mpliver.io.dicom import scan_series, write_dicom_series
from mpliver.io.dicom_seg import write_dicom_seg
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti
from mpliver.io.resample import reorient_to_grid


def _convert(capsys, pv, label, out, *extra):
    code = main(["convert", "--pv", str(pv), "--art", str(pv), "--label", str(label), "--case-id", "c",
                 "--out", str(out), *extra])
    return code, capsys.readouterr().err


def _one_source(ds):
    first = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    for fg in ds.PerFrameFunctionalGroupsSequence:
        fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = \
            first.ReferencedSOPInstanceUID


def _edited(src, dst, change):
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)
    return dst


@pytest.fixture(scope="module")
def real_series(shared_data, tmp_path_factory):
    """The real PV series with the UIDs an un-anonymised export carries (the shared copy has them emptied),
    and the clean label on its grid: TotalSegmentator's liver (5) as 1 and portal vein (64) as 2."""
    folder = tmp_path_factory.mktemp("real") / "pv"
    folder.mkdir()
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for p in sorted((shared_data / "totalseg_example" / "pv_dicom").iterdir()):
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, "TS-EXAMPLE"
        ds.save_as(folder / p.name)
    ts, ts_geom = read_nifti(shared_data / "totalseg_example" / "pv_dicom_seg.nii.gz")
    geom = scan_series(folder).geometry
    ts = reorient_to_grid(ts, ts_geom, geom)  # its array order differs from the DICOM rows: go by the affine
    assert ts is not None
    label = np.zeros(geom.shape, np.uint8)
    label[ts == 5] = 1
    label[ts == 64] = 2
    assert np.count_nonzero(label == 1) > 10_000 and np.count_nonzero(label == 2) > 100
    write_dicom_seg(folder.parent / "seg.dcm", label, folder)
    return folder, label, geom


@pytest.mark.slow  # JPEG 2000 decoding and SEG encoding of 512 x 512 slices
def test_real_seg_with_one_source_slice_equals_clean_label(tmp_path, real_series, capsys):
    folder, label, geom = real_series
    seg = _edited(folder.parent / "seg.dcm", tmp_path / "one.dcm", _one_source)
    code, err = _convert(capsys, folder, seg, tmp_path / "ds")
    assert code == 0, err
    assert err.startswith("warning: ") and len(err.strip().splitlines()) == 1
    assert "placed by plane position" in err
    case = Dataset(tmp_path / "ds").load_case("c")
    assert case.pv_geometry.same_grid(geom)
    np.testing.assert_array_equal(case.label, label)


@pytest.mark.slow
def test_real_seg_of_another_patient_refused_unless_flag(tmp_path, real_series, capsys):
    folder, label, _ = real_series
    seg = _edited(folder.parent / "seg.dcm", tmp_path / "other.dcm",
                  lambda ds: setattr(ds, "PatientID", "SOMEONE-ELSE"))
    code, err = _convert(capsys, folder, seg, tmp_path / "ds")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {seg}: ")
    assert "PatientID 'SOMEONE-ELSE' (SEG) vs 'TS-EXAMPLE' (series)" in lines[0]
    assert not (tmp_path / "ds").exists()
    code, err = _convert(capsys, folder, seg, tmp_path / "ds", "--label-mismatch-ok")
    assert code == 0, err
    np.testing.assert_array_equal(Dataset(tmp_path / "ds").load_case("c").label, label)


@pytest.mark.slow  # highdicom import and SEG encoding
def test_phantom_seg_of_another_patients_series(tmp_path, capsys):
    """Phantom patient PH1's SEG (same grid, its own frame of reference) given with PH0's series."""
    from mpliver.data.phantom import PhantomConfig, generate_case

    config = PhantomConfig(shape=(64, 64, 16), spacing=(5.0, 5.0, 10.0))
    case0, case1 = generate_case(0, 3, "HCC", config), generate_case(1, 3, "cyst", config)
    write_dicom_series(tmp_path / "ph0", case0.phases["PV"], case0.geometries["PV"], patient_id="PH0")
    write_dicom_series(tmp_path / "ph1", case1.phases["PV"], case1.geometries["PV"], patient_id="PH1")
    write_dicom_seg(tmp_path / "seg0.dcm", case0.label, tmp_path / "ph0")
    write_dicom_seg(tmp_path / "seg1.dcm", case0.label, tmp_path / "ph1")
    for_uid = {n: pydicom.dcmread(next((tmp_path / n).iterdir())).FrameOfReferenceUID for n in ("ph0", "ph1")}

    code, err = _convert(capsys, tmp_path / "ph0", tmp_path / "seg1.dcm", tmp_path / "ds")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(tmp_path / "seg1.dcm") in lines[0]
    assert f"FrameOfReferenceUID {for_uid['ph1']} (SEG) vs {for_uid['ph0']} (series)" in lines[0]
    assert "PatientID 'PH1' (SEG) vs 'PH0' (series)" in lines[0]
    code, err = _convert(capsys, tmp_path / "ph0", tmp_path / "seg1.dcm", tmp_path / "ds",
                         "--label-mismatch-ok")
    assert code == 0, err
    np.testing.assert_array_equal(Dataset(tmp_path / "ds").load_case("c").label, case0.label)
    # the phantom's own SEG with every frame naming one source slice: the clean label, voxel for voxel
    seg = _edited(tmp_path / "seg0.dcm", tmp_path / "one.dcm", _one_source)
    code, err = _convert(capsys, tmp_path / "ph0", seg, tmp_path / "ds2")
    assert code == 0, err
    np.testing.assert_array_equal(Dataset(tmp_path / "ds2").load_case("c").label, case0.label)
