"""DICOM-SEG writing and reading (highdicom) on a written CT series: labels come back identical."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mpliver.errors import InputError, InputWarning
from mpliver.io.dicom import read_dicom_series, write_dicom_series
from mpliver.io.dicom_seg import LABEL_SYNONYMS, read_dicom_seg, write_dicom_seg
from mpliver.io.geometry import Geometry


@pytest.fixture
def series(tmp_path, make_ct):
    # Oblique in-plane axes so that any row/column mix-up shows.
    theta = 0.4
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    geom = Geometry.from_spacing((14, 11, 6), (0.9, 0.8, 2.0), origin=(3, -7, 40), direction=rot)
    write_dicom_series(tmp_path / "ct", make_ct(geom.shape), geom)
    return tmp_path / "ct", geom


def _label(shape):
    lab = np.zeros(shape, np.uint8)
    lab[2:10, 1:8, 1:5] = 1
    lab[4:6, 3:7, 2:4] = 2  # asymmetric in i and j
    lab[12, 9, 5] = 1
    return lab


@pytest.mark.slow  # the first highdicom import costs seconds
def test_seg_roundtrip_labels_identical(tmp_path, series):
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder, algorithm="mpliver-test")
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    back, g2, segments = read_dicom_seg(tmp_path / "seg.dcm", folder, label_map=LABEL_SYNONYMS)
    np.testing.assert_array_equal(back, lab)
    assert g2.same_grid(geom)
    assert [(s.number, s.label, s.property_type) for s in segments] == [
        (1, "liver", "Liver"),
        (2, "tumor", "Neoplasm"),
    ]
    by_number, _, _ = read_dicom_seg(tmp_path / "seg.dcm", folder)  # value = segment number
    np.testing.assert_array_equal(by_number, lab)


def test_seg_frames_match_source_slices(tmp_path, series):
    """Independent check with pydicom: the SEG frame that refers to slice k holds label[:, :, k].T."""
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    frames = seg.pixel_array  # (n_frames, rows, cols), binary per segment
    src_uid_to_k = {}
    for p in folder.iterdir():
        d = pydicom.dcmread(p, stop_before_pixels=True)
        src_uid_to_k[d.SOPInstanceUID] = int(d.InstanceNumber) - 1  # the writer numbers slices from k = 0
    checked = set()
    for f, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
        seg_no = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = src_uid_to_k[uid]
        np.testing.assert_array_equal(frames[f], (lab[:, :, k] == seg_no).T)
        checked.add((seg_no, k))
    # Empty frames are left out; every non-empty (segment, slice) pair has its frame.
    assert checked == {(n, k) for n in (1, 2) for k in range(geom.shape[2]) if np.any(lab[:, :, k] == n)}


def test_seg_read_by_geometry_when_series_has_new_uids(tmp_path, series, make_ct):
    """A re-exported series (new UIDs, same grid) is another series: refused, and with `allow_mismatch` it
    receives the segmentation through plane positions."""
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder)
    write_dicom_series(tmp_path / "again", make_ct(geom.shape, 3), geom)
    with pytest.raises(InputError, match="FrameOfReferenceUID .* vs .*; referenced series"):
        read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "again")
    back, _, _ = read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "again", label_map=LABEL_SYNONYMS,
                                allow_mismatch=True)
    np.testing.assert_array_equal(back, lab)


def test_seg_on_other_grid_refused(tmp_path, series, make_ct):
    folder, geom = series
    write_dicom_seg(tmp_path / "seg.dcm", _label(geom.shape), folder)
    other = Geometry(geom.affine @ np.diag([1.5, 1.0, 1.0, 1.0]), geom.shape)  # other pixel spacing
    write_dicom_series(tmp_path / "other", make_ct(geom.shape), other)
    with pytest.raises(InputError, match="voxel grid"):
        read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "other", allow_mismatch=True)


def test_unknown_segment_name_refused(tmp_path, series):
    folder, geom = series
    write_dicom_seg(tmp_path / "seg.dcm", _label(geom.shape), folder, segments={1: "liver", 2: "kidney"})
    with pytest.raises(InputError, match="kidney"):
        read_dicom_seg(tmp_path / "seg.dcm", folder, label_map=LABEL_SYNONYMS)


def test_not_a_seg_file(tmp_path, series):
    folder, _ = series
    with pytest.raises(InputError, match="not a readable DICOM-SEG"):
        read_dicom_seg(next(folder.iterdir()), folder)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="bad.dcm"):
        read_dicom_seg(bad, folder)


def test_written_series_is_readable_after_seg(tmp_path, series):
    """Writing a SEG beside the series must not disturb reading the series (the SEG is skipped)."""
    folder, geom = series
    write_dicom_seg(folder / "seg.dcm", _label(geom.shape), folder)
    arr, g2 = read_dicom_series(folder)
    assert arr.shape == geom.shape and g2.same_grid(geom)


def test_empty_and_tumour_only_labels_roundtrip(tmp_path, series):
    """Predictions without liver or without any finding must still make a valid SEG."""
    folder, geom = series
    tumour_only = np.zeros(geom.shape, np.uint8)
    tumour_only[3:5, 2:4, 2] = 2
    for name, lab in (("empty", np.zeros(geom.shape, np.uint8)), ("tumour", tumour_only)):
        write_dicom_seg(tmp_path / f"{name}.dcm", lab, folder, algorithm="mpliver")
        back, _, _ = read_dicom_seg(tmp_path / f"{name}.dcm", folder, label_map=LABEL_SYNONYMS)
        np.testing.assert_array_equal(back, lab)
    with pytest.raises(ValueError, match="no segment description"):
        write_dicom_seg(tmp_path / "x.dcm", tumour_only * 2, folder)


def _edit_seg(src, dst, change):
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)
    return dst


def _all_frames_name_first_source(ds):
    first = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    for fg in ds.PerFrameFunctionalGroupsSequence:
        fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = \
            first.ReferencedSOPInstanceUID


def test_frames_naming_one_source_slice_are_placed_by_position(tmp_path, series):
    """Some exports name one source slice in every frame: the frames still land on their own slices."""
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder)
    seg = _edit_seg(tmp_path / "seg.dcm", tmp_path / "one.dcm", _all_frames_name_first_source)
    n_frames = int(pydicom.dcmread(seg).NumberOfFrames)
    expect = f"{n_frames - 1} of {n_frames} DICOM-SEG frames name a source slice"
    with pytest.warns(InputWarning, match=expect):
        back, _, _ = read_dicom_seg(seg, folder, label_map=LABEL_SYNONYMS)
    np.testing.assert_array_equal(back, lab)


def test_frame_between_slices_refused(tmp_path, series):
    folder, geom = series
    write_dicom_seg(tmp_path / "seg.dcm", _label(geom.shape), folder)

    def shift(ds):  # half a slice (2 mm) along the normal, which is +z here
        pos = ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence[0].ImagePositionPatient
        pos[2] = float(pos[2]) + 1.0

    seg = _edit_seg(tmp_path / "seg.dcm", tmp_path / "shifted.dcm", shift)
    with pytest.raises(InputError, match="frame 4 at .* lies on no slice of the series") as err:
        read_dicom_seg(seg, folder)
    assert "\n" not in str(err.value) and "shifted.dcm" in str(err.value)


@pytest.mark.parametrize("what", ["patient", "frame of reference", "series"])
def test_seg_of_another_patient_frame_or_series_refused(tmp_path, series, what):
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder)
    source = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    other = pydicom.uid.generate_uid()
    if what == "patient":
        change, expect = (lambda ds: setattr(ds, "PatientID", "NOT-ME"),
                          f"PatientID 'NOT-ME' (SEG) vs '{source.PatientID}' (series)")
    elif what == "frame of reference":
        change, expect = (lambda ds: setattr(ds, "FrameOfReferenceUID", other),
                          f"FrameOfReferenceUID {other} (SEG) vs {source.FrameOfReferenceUID} (series)")
    else:
        change, expect = (lambda ds: setattr(ds.ReferencedSeriesSequence[0], "SeriesInstanceUID", other),
                          f"referenced series {other} (SEG) vs SeriesInstanceUID {source.SeriesInstanceUID}")
    seg = _edit_seg(tmp_path / "seg.dcm", tmp_path / "other.dcm", change)
    with pytest.raises(InputError) as err:
        read_dicom_seg(seg, folder)
    text = str(err.value)
    assert expect in text and "--label-mismatch-ok" in text and "\n" not in text
    back, _, _ = read_dicom_seg(seg, folder, label_map=LABEL_SYNONYMS, allow_mismatch=True)
    np.testing.assert_array_equal(back, lab)
