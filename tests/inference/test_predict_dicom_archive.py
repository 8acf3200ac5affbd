"""`predict` on DICOM as archives deliver it: a series with a coronal reformat, the anonymised real series
with --dicom-seg (read back by highdicom), and --dicom-seg refused before the network runs."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from helpers.predict_toys import tiny_bundle
from mpliver.cli import main
from mpliver.io import dicom_study
from mpliver.io.dicom import read_dicom_series
from mpliver.io.geometry import Geometry
from mpliver.io.resample import reorient_to_grid

pytestmark = pytest.mark.slow


def _with_coronal_slice(src, dst):
    """The series plus one coronal reformat sharing its (empty) series UID."""
    shutil.copytree(src, dst)
    ds = pydicom.dcmread(sorted(dst.iterdir())[10])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-249.5, -300.0, -700.0]
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dst / "coronal_reformat")


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "totalseg_example"
    return folder / "pv_dicom", folder / "pv_dicom_seg.nii.gz"


def test_extra_coronal_slice_outputs_on_the_axial_grid_and_seg_reads_back(real, tmp_path, capsys,
                                                                           monkeypatch):
    import highdicom as hd

    pv, liver = real
    _with_coronal_slice(pv, tmp_path / "pv")
    bundle = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    out = tmp_path / "out"
    scans = []
    real_scan = dicom_study.scan_folder
    monkeypatch.setattr(dicom_study, "scan_folder", lambda root: scans.append(root) or real_scan(root))
    assert main(["predict", "--model", str(bundle), "--out", str(out), "--pv", str(tmp_path / "pv"),
                 "--art", str(tmp_path / "pv"), "--liver-mask", str(liver), "--liver-mask-values", "5",
                 "--device", "cpu", "--dicom-seg"]) == 0
    err = capsys.readouterr().err
    notice = (f"warning: {tmp_path / 'pv'}: dropped 1 of 21 files: other orientation (coronal); kept 20 "
              "axial slices")
    assert err.count(notice) == 1
    # the headers are scanned once for the check before the network, then once per phase read (ART is the
    # same folder here); the lesion references and the SEG reuse the PV scan
    assert len(scans) == 3
    clean_geom = read_dicom_series(pv)[1]
    for name in ("pv.nii.gz", "pv_uncertainty.nii.gz"):
        img = nib.load(str(out / name))
        assert img.shape == clean_geom.shape == (512, 512, 20)
        np.testing.assert_allclose(img.affine, clean_geom.affine, atol=1e-6)

    # The SEG of the anonymised series: highdicom reads it; its frames refer to the file-meta SOP UIDs.
    seg = hd.seg.segread(out / "pv_seg.dcm")
    label = np.asarray(nib.load(str(out / "pv.nii.gz")).dataobj)
    metas = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
             for p in pv.iterdir()}
    referenced = {str(r.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence
                  for r in s.ReferencedInstanceSequence}
    assert referenced and referenced <= metas
    assert seg.SeriesInstanceUID and seg.StudyInstanceUID and seg.SeriesInstanceUID != seg.StudyInstanceUID
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    vol = seg.get_volume(segment_numbers=numbers, combine_segments=True)
    seg_geom = Geometry(vol.get_affine("RAS"), vol.array.shape)
    placed = reorient_to_grid(np.asarray(vol.array).astype(np.uint8), seg_geom, clean_geom)
    assert placed is not None
    # the SEG volume covers the slices with frames; on them it equals the label map
    ks = sorted({int(k) for k in np.nonzero(placed)[2]})
    assert ks and np.array_equal(placed[..., ks], label[..., ks])
    assert np.count_nonzero(placed) == np.count_nonzero(label)


def test_dicom_seg_refused_before_the_network(phantom_case_dicom, tmp_path, capsys, monkeypatch):
    import mpliver.inference.predict as engine

    def must_not_run(*args, **kwargs):
        raise AssertionError("the network ran before the --dicom-seg check")

    monkeypatch.setattr(engine, "predict", must_not_run)
    bundle = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    folder = phantom_case_dicom(tmp_path / "pv")
    for p in folder.iterdir():  # no SOP UID left anywhere
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(p)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(bundle), "--out", str(out), "--pv", str(folder), "--art",
                 str(folder), "--device", "cpu", "--dicom-seg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {folder}: PV slices have no SOPInstanceUID, neither in the data set nor in the "
                   "file meta; a DICOM-SEG cannot refer to them")
    assert not out.exists()


@pytest.fixture
def phantom_case_dicom():
    from mpliver.data.phantom.case import generate_case
    from mpliver.data.phantom.config import PhantomConfig
    from mpliver.io.dicom import write_dicom_series

    def write(folder):
        case = generate_case(0, 0, "HCC", PhantomConfig(shape=(32, 32, 8), spacing=(8.0, 8.0, 10.0)))
        write_dicom_series(folder, case.phases["PV"], case.geometries["PV"])
        return folder

    return write
