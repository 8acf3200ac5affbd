"""DICOM-SEG writing and reading (highdicom) on a written CT series: labels come back identical."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mpliver.errors import InputError
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
    """A re-exported series (new UIDs, same grid) still receives the segmentation through plane positions."""
    folder, geom = series
    lab = _label(geom.shape)
    write_dicom_seg(tmp_path / "seg.dcm", lab, folder)
    write_dicom_series(tmp_path / "again", make_ct(geom.shape, 3), geom)
    back, _, _ = read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "again", label_map=LABEL_SYNONYMS)
    np.testing.assert_array_equal(back, lab)


def test_seg_on_other_grid_refused(tmp_path, series, make_ct):
    folder, geom = series
    write_dicom_seg(tmp_path / "seg.dcm", _label(geom.shape), folder)
    other = Geometry(geom.affine @ np.diag([1.5, 1.0, 1.0, 1.0]), geom.shape)  # other pixel spacing
    write_dicom_series(tmp_path / "other", make_ct(geom.shape), other)
    with pytest.raises(InputError, match="voxel grid"):
        read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "other")


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
