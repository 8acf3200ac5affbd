"""Series as archives deliver them: stray planes dropped, acquisitions split and chosen, CT only, rescale.

Each quirk is built from a clean series (the real JPEG 2000 PV series, or a phantom case written as DICOM);
where the input is legal, the volume read must equal the clean series voxel for voxel, geometry included.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from helpers import dicom_quirks as q
from mpliver.cli import main
from mpliver.errors import InputError, InputWarning
from mpliver.io.dicom import read_dicom_series, scan_series, write_dicom_series
from mpliver.io.dicom_stack import AmbiguousSeriesError, plane_name
from mpliver.io.geometry import Geometry


def assert_same_volume(a, b) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    assert tuple(a[1].shape) == tuple(b[1].shape)
    np.testing.assert_array_equal(a[1].affine, b[1].affine)


@pytest.fixture(scope="module")
def real_pv(shared_data):
    folder = shared_data / "totalseg_example" / "pv_dicom"
    return folder, read_dicom_series(folder)


# ---- stray planes --------------------------------------------------------------------------------
def test_real_series_with_a_coronal_reformat_reads_as_the_axial_stack(real_pv, tmp_path):
    folder, clean = real_pv
    q.add_coronal_slice(folder, tmp_path / "s")
    with pytest.warns(InputWarning) as record:
        got = read_dicom_series(tmp_path / "s")
    assert_same_volume(got, clean)
    notices = [str(w.message) for w in record if w.category is InputWarning]
    assert notices == [f"{tmp_path / 's'}: dropped 1 of 21 files: other orientation (coronal); kept 20 axial "
                       "slices"]


def test_phantom_with_localizer_and_coronal_slice(phantom_dicom, tmp_path):
    clean = read_dicom_series(phantom_dicom["PV"])
    q.add_localizer(phantom_dicom["PV"], tmp_path / "s")
    q.add_coronal_slice(tmp_path / "s", tmp_path / "s2")
    with pytest.warns(InputWarning) as record:
        got = read_dicom_series(tmp_path / "s2")
    assert_same_volume(got, clean)
    (msg,) = [str(w.message) for w in record if w.category is InputWarning]
    assert "dropped 2 of 14 files: " in msg and "1 localizer" in msg
    assert "1 other orientation (coronal)" in msg


def test_other_size_and_spacing_named(phantom_dicom, tmp_path):
    files = q.copy_series(phantom_dicom["PV"], tmp_path / "s")
    ds = pydicom.dcmread(files[0])
    ds.PixelSpacing = [3.0, 3.0]
    q._new_instance(ds)
    ds.save_as(tmp_path / "s" / "thin")
    with pytest.warns(InputWarning, match="other pixel spacing"):
        series = scan_series(tmp_path / "s")
    assert series.notice == "dropped 1 of 13 files: other pixel spacing (3 x 3 mm); kept 12 axial slices"
    assert len(series.paths) == 12 and tmp_path / "s" / "thin" not in series.paths


def test_fewer_than_three_slices_left_is_refused(tmp_path, make_ct):
    geom = Geometry.from_spacing((8, 7, 2), (1, 1, 2.0))
    write_dicom_series(tmp_path / "two", make_ct((8, 7, 2)), geom)
    q.add_coronal_slice(tmp_path / "two", tmp_path / "s")
    with pytest.raises(InputError, match="dropped 1 of 3 files: other orientation .*fewer than 3") as e:
        read_dicom_series(tmp_path / "s")
    assert "\n" not in str(e.value) and str(tmp_path / "s") in str(e.value)


def test_equal_stacks_of_two_orientations_refused(tmp_path, make_ct):
    write_dicom_series(tmp_path / "ax", make_ct((8, 7, 4)), Geometry.from_spacing((8, 7, 4), (1, 1, 2.0)))
    files = q.copy_series(tmp_path / "ax", tmp_path / "s")
    for k, p in enumerate(files):
        ds = pydicom.dcmread(p)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0, 2.0 * k, 0]
        q._new_instance(ds)
        ds.save_as(tmp_path / "s" / f"cor{k}")
    with pytest.raises(InputError, match="two stacks of 4 planes"):
        read_dicom_series(tmp_path / "s")


def test_plane_names():
    assert plane_name(np.array([1, 0, 0, 0, 1, 0.0])) == "axial"
    assert plane_name(np.array([1, 0, 0, 0, 0, -1.0])) == "coronal"
    assert plane_name(np.array([0, 1, 0, 0, 0, -1.0])) == "sagittal"
    c, s = np.cos(0.4), np.sin(0.4)
    assert plane_name(np.array([1, 0, 0, 0, c, s])) == "oblique"


# ---- several acquisitions in one series ----------------------------------------------------------
@pytest.fixture(scope="module")
def three_phases(tmp_path_factory, phantom_dicom):
    """Three acquisitions at the same positions (PV + 0, 30, 60 HU) and their clean reads."""
    root = tmp_path_factory.mktemp("acq")
    case = phantom_dicom["case"]
    sources = []
    for a in range(3):
        write_dicom_series(root / f"src{a}", case.phases["PV"] + 30 * a, case.geometries["PV"])
        sources.append(root / f"src{a}")
    return root, sources, [read_dicom_series(s) for s in sources]


@pytest.mark.parametrize("kind", ["numbers", "times", "positions"])
def test_three_acquisitions_refused_with_table_then_chosen(three_phases, tmp_path, kind):
    root, sources, clean = three_phases
    groups = q.merge_acquisitions(sources, tmp_path / "s", acquisition_numbers=kind == "numbers",
                                  times=kind != "positions")
    if kind != "positions":  # shuffled InstanceNumbers: only the numbers (or the times) can tell them apart
        files = [p for g in groups for p in g]
        for p, n in zip(files, np.random.default_rng(0).permutation(len(files)), strict=True):
            ds = pydicom.dcmread(p)
            ds.InstanceNumber = int(n) + 1
            ds.save_as(p)
    with pytest.raises(AmbiguousSeriesError) as err:
        read_dicom_series(tmp_path / "s")
    message = str(err.value)
    assert "\n" not in message and "holds 3 acquisitions" in message
    assert f"{tmp_path / 's'}::group=N" in message
    table = err.value.details.splitlines()
    assert table[0].split() == ["select", "group", "acq", "slices", "step_mm", "z_mm", "time", "contrast"]
    assert [row.split()[0] for row in table[1:]] == [f"{tmp_path / 's'}::group={g}" for g in (1, 2, 3)]
    assert all(" 12 " in row and "-44.0 .. 44.0" in row for row in table[1:])
    for g in range(3):
        assert_same_volume(read_dicom_series(f"{tmp_path / 's'}::group={g + 1}"), clean[g])


def test_unknown_group_is_refused_naming_the_groups(three_phases, tmp_path):
    _, sources, _ = three_phases
    q.merge_acquisitions(sources, tmp_path / "s")
    with pytest.raises(AmbiguousSeriesError, match="group '4' is not one of them"):
        read_dicom_series(f"{tmp_path / 's'}::group=4")


def test_cli_prints_the_group_table_then_one_error_line(three_phases, tmp_path, capsys):
    _, sources, _ = three_phases
    q.merge_acquisitions(sources, tmp_path / "s")
    assert main(["convert", "--pv", str(tmp_path / "s"), "--art", str(sources[0]),
                 "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("select") and len(lines) == 5 and lines[-1].startswith("error: ")
    assert main(["convert", "--pv", f"{tmp_path / 's'}::group=3", "--art", str(sources[0]),
                 "--out", str(tmp_path / "out")]) == 0


def test_helical_slices_with_own_times_and_numbers_stay_one_volume(phantom_dicom, tmp_path):
    """Every slice its own AcquisitionNumber and time (some scanners): no repeated position, no split."""
    files = q.copy_series(phantom_dicom["PV"], tmp_path / "s")
    for k, p in enumerate(files):
        ds = pydicom.dcmread(p)
        ds.AcquisitionNumber = k + 1
        ds.AcquisitionTime = q._tm(3600 * 10 + 30 * k)
        ds.save_as(p)
    assert_same_volume(read_dicom_series(tmp_path / "s"), read_dicom_series(phantom_dicom["PV"]))


def test_a_copied_file_is_not_an_acquisition(phantom_dicom, tmp_path):
    files = q.copy_series(phantom_dicom["PV"], tmp_path / "s")
    shutil.copy(files[4], tmp_path / "s" / "copy")
    with pytest.raises(InputError, match="share position.*slice_0004.dcm"):
        read_dicom_series(tmp_path / "s")


# ---- modality and rescale ------------------------------------------------------------------------
def test_mr_series_refused_in_one_line(phantom_dicom, tmp_path):
    q.edit_all(phantom_dicom["PV"], tmp_path / "mr", Modality="MR")
    with pytest.raises(InputError) as err:
        read_dicom_series(tmp_path / "mr")
    assert str(err.value) == f"{tmp_path / 'mr'}: modality MR: only CT is accepted"


def test_missing_rescale_is_taken_as_identity_when_values_are_hu(phantom_dicom, tmp_path):
    q.edit_all(phantom_dicom["PV"], tmp_path / "s", RescaleSlope=None, RescaleIntercept=None)
    assert_same_volume(read_dicom_series(tmp_path / "s"), read_dicom_series(phantom_dicom["PV"]))


def test_missing_rescale_values_go_through_check_hu(real_pv, tmp_path, monkeypatch):
    """Raw stored values of the real series (HU + 1024) are handed to check_hu, whose refusal is reported."""
    import mpliver.io.dicom as dicom

    folder, clean = real_pv
    q.edit_all(folder, tmp_path / "s", RescaleSlope=None, RescaleIntercept=None)
    seen = []

    def fake_check(array, path=None):
        seen.append(array.copy())
        raise InputError("looks like HU + 1024: rescale missing", path)

    monkeypatch.setattr(dicom, "check_hu", fake_check)
    with pytest.raises(InputError, match=r"s: no RescaleSlope/RescaleIntercept in 20 of 20 .*HU \+ 1024"):
        read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(seen[0], clean[0] + 1024)  # the stored values, not rescaled


def test_missing_rescale_with_display_values_refused(tmp_path):
    """An 8-bit-like series (0-150) without rescale fails check_hu."""
    geom = Geometry.from_spacing((8, 7, 4), (1, 1, 2.0))
    values = np.random.default_rng(0).integers(0, 150, (8, 7, 4)).astype(np.float32)
    write_dicom_series(tmp_path / "src", values, geom)
    q.edit_all(tmp_path / "src", tmp_path / "s", RescaleSlope=None, RescaleIntercept=None)
    with pytest.raises(InputError, match="no RescaleSlope/RescaleIntercept.*not HU"):
        read_dicom_series(tmp_path / "s")
