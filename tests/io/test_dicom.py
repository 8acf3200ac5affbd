"""DICOM series reading (real JPEG 2000 series) and writing (round trips, incl. oblique and flipped grids)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from mpliver.errors import InputError
from mpliver.io.dicom import read_dicom_series, write_dicom_series
from mpliver.io.dicom_study import scan_study
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import read_nifti
from mpliver.io.resample import resample_to_grid


def _rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


# ---- the real series -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_series(shared_data):
    return read_dicom_series(shared_data / "totalseg_example" / "pv_dicom")


def test_real_jpeg2000_series_geometry_and_values(shared_data, real_series):
    folder = shared_data / "totalseg_example" / "pv_dicom"
    array, geom = real_series
    assert array.shape == (512, 512, 20) and array.dtype == np.float32
    np.testing.assert_allclose(geom.spacing, [0.9765625, 0.9765625, 2.0], atol=1e-6)
    # Independent reference: each file's own header and pixels, read with pydicom.
    for path in sorted(folder.iterdir())[::7]:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        k = int(round((ipp[2] - geom.origin[2]) / 2.0))
        # Voxel (0, 0, k) is the top-left pixel of this slice; DICOM's LPS x, y are RAS -x, -y.
        np.testing.assert_allclose(geom.index_to_world([0, 0, k]), ipp * [-1, -1, 1], atol=1e-4)
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        r, c = 300, 100  # row r, column c -> array index (i=c, j=r)
        assert array[c, r, k] == hu[r, c]
        np.testing.assert_array_equal(array[:, :, k], hu.T.astype(np.float32))


def test_real_series_liver_label_covers_liver_hu(shared_data, real_series):
    """MUST-SHOW: TotalSegmentator's liver (label 5), put on the DICOM grid via the geometry, is liver HU."""
    array, geom = real_series
    seg, seg_geom = read_nifti(shared_data / "totalseg_example" / "pv_dicom_seg.nii.gz")

    # Same physical region: the sets of corner voxel centres coincide (the array axes differ: j is flipped).
    def corners(g):
        idx = np.array(
            [[i, j, k] for i in (0, g.shape[0] - 1) for j in (0, g.shape[1] - 1) for k in (0, g.shape[2] - 1)]
        )
        return np.array(sorted(map(tuple, np.round(g.index_to_world(idx), 3))))

    np.testing.assert_allclose(corners(geom), corners(seg_geom), atol=1e-3)
    assert not np.allclose(geom.affine, seg_geom.affine)  # the array orders really differ

    on_grid = resample_to_grid(seg, seg_geom, geom, "nearest")  # SimpleITK nearest neighbour
    # Independent mapping, 200k random voxels: world point of a DICOM voxel -> nearest label index (float64).
    ijk = np.random.default_rng(0).integers(0, geom.shape, size=(200_000, 3))
    src = np.rint(seg_geom.world_to_index(geom.index_to_world(ijk))).astype(int)
    np.testing.assert_array_equal(
        on_grid[ijk[:, 0], ijk[:, 1], ijk[:, 2]], seg[src[:, 0], src[:, 1], src[:, 2]]
    )
    assert np.count_nonzero(on_grid == 5) == np.count_nonzero(seg == 5)  # the grids coincide: nothing lost

    liver = array[on_grid == 5]
    assert liver.size > 100_000
    assert 70 <= np.median(liver) <= 110  # measured ~93 HU
    assert np.mean((liver > 40) & (liver < 160)) > 0.9
    assert np.median(array[on_grid == 52]) > 120  # aorta at blood-pool HU (~151)


@pytest.mark.slow
def test_real_series_matches_simpleitk_gdcm(shared_data, real_series):
    """An independent reader (SimpleITK / GDCM) gives the same voxels and the same affine."""
    import SimpleITK as sitk

    from mpliver.io.geometry import from_sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(shared_data / "totalseg_example" / "pv_dicom")))
    ref, ref_geom = from_sitk(reader.Execute())
    array, geom = real_series
    np.testing.assert_allclose(geom.affine, ref_geom.affine, atol=1e-4)
    np.testing.assert_array_equal(array, ref.astype(np.float32))


# ---- writing and round trips ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["axis", "oblique"])
def test_write_read_roundtrip_keeps_values_and_affine(tmp_path, make_ct, kind):
    shape = (16, 12, 6)
    direction = np.eye(3) if kind == "axis" else _rotation(0.3, -0.2, 0.15)
    geom = Geometry.from_spacing(shape, (0.7, 0.85, 3.0), origin=(12.3, -40.1, 250.0), direction=direction)
    values = make_ct(shape) + np.random.default_rng(1).uniform(-0.4, 0.4, shape).astype(np.float32)
    paths = write_dicom_series(tmp_path / "ct", values, geom)
    assert len(paths) == shape[2] and all(p.exists() for p in paths)
    back, g2 = read_dicom_series(tmp_path / "ct")
    assert np.max(np.abs(back - values)) <= 0.5 + 1e-4  # stored as whole HU
    np.testing.assert_allclose(g2.affine, geom.affine, atol=1e-3)
    ds = pydicom.dcmread(paths[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian and ds.BitsAllocated == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_written_series_reads_the_same_in_simpleitk(tmp_path, make_ct):
    """Independent reader for the writer: GDCM sees the same values and geometry on an oblique grid."""
    import SimpleITK as sitk

    from mpliver.io.geometry import from_sitk

    shape = (12, 10, 5)
    geom = Geometry.from_spacing(
        shape, (0.7, 0.9, 2.0), origin=(-5, 8, 100), direction=_rotation(0.5, 0.1, -0.2)
    )
    values = make_ct(shape)
    write_dicom_series(tmp_path / "ct", values, geom)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    ref, ref_geom = from_sitk(reader.Execute())
    np.testing.assert_allclose(ref_geom.affine, geom.affine, atol=1e-3)
    np.testing.assert_array_equal(ref.astype(np.float32), values)


def test_left_handed_grid_reads_back_as_same_world_voxels(tmp_path, make_ct):
    """A flipped k axis cannot be stored as such in DICOM: it reads back with k reversed, same voxels."""
    shape = (10, 9, 5)
    geom = Geometry.from_spacing(
        shape, (1.0, 1.2, 2.0), origin=(5, 6, 7), direction=np.diag([1.0, 1.0, -1.0])
    )
    values = make_ct(shape)
    write_dicom_series(tmp_path / "ct", values, geom)
    back, g2 = read_dicom_series(tmp_path / "ct")
    ijk = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1).reshape(-1, 3)
    src = geom.world_to_index(g2.index_to_world(ijk))
    assert np.max(np.abs(src - np.rint(src))) < 1e-3
    src = np.rint(src).astype(int)
    np.testing.assert_array_equal(back.reshape(-1), values[src[:, 0], src[:, 1], src[:, 2]])
    np.testing.assert_array_equal(back, values[:, :, ::-1])


def test_large_values_use_rescale_slope(tmp_path):
    geom = Geometry.from_spacing((4, 4, 3), (1, 1, 1))
    values = np.linspace(-50000, 60000, 48, dtype=np.float64).reshape(4, 4, 3)
    write_dicom_series(tmp_path / "ct", values, geom)
    back, _ = read_dicom_series(tmp_path / "ct")
    slope = 110000 / 65535
    assert np.max(np.abs(back - values)) <= slope / 2 + 1e-2


def test_slice_order_comes_from_positions_not_names_or_numbers(tmp_path, make_ct):
    geom = Geometry.from_spacing((8, 7, 6), (1, 1, 2.5))
    values = make_ct((8, 7, 6))
    paths = write_dicom_series(tmp_path / "ct", values, geom)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    order = [3, 0, 5, 1, 4, 2]
    for new, old in enumerate(order):  # file names and InstanceNumbers now say a wrong order
        ds = pydicom.dcmread(paths[old])
        ds.InstanceNumber = new + 1
        ds.save_as(shuffled / f"IM{new:02d}")
    back, g2 = read_dicom_series(shuffled)
    np.testing.assert_array_equal(back, values)
    np.testing.assert_allclose(g2.affine, geom.affine, atol=1e-4)


# ---- bad input -----------------------------------------------------------------------------------
@pytest.fixture
def series(tmp_path, make_ct):
    geom = Geometry.from_spacing((8, 7, 6), (1, 1, 2.0))
    paths = write_dicom_series(tmp_path / "ct", make_ct((8, 7, 6)), geom)
    return tmp_path / "ct", paths


def test_missing_slice_refused(series):
    folder, paths = series
    paths[3].unlink()
    with pytest.raises(InputError, match="missing slice") as err:
        read_dicom_series(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_non_uniform_spacing_refused(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[-1])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.7]
    ds.save_as(paths[-1])
    with pytest.raises(InputError, match="non-uniform slice spacing"):
        read_dicom_series(folder)


def test_duplicate_position_refused(series):
    folder, paths = series
    shutil.copy(paths[2], folder / "copy.dcm")
    with pytest.raises(InputError, match="share position"):
        read_dicom_series(folder)


def test_several_series_listed_or_chosen(tmp_path, make_ct):
    geom = Geometry.from_spacing((8, 7, 4), (1, 1, 2.0))
    a = make_ct((8, 7, 4), 0)
    write_dicom_series(tmp_path / "a", a, geom, series_uid="1.2.3.4")
    write_dicom_series(tmp_path / "b", make_ct((8, 7, 4), 1), geom, series_uid="1.2.3.5")
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "a", mixed)
    for p in (tmp_path / "b").iterdir():
        shutil.copy(p, mixed / f"b_{p.name}")
    assert sorted(scan_study(mixed)) == ["1.2.3.4", "1.2.3.5"]
    with pytest.raises(InputError, match=r"2 series found.*1\.2\.3\.4.*1\.2\.3\.5"):
        read_dicom_series(mixed)
    back, _ = read_dicom_series(mixed, series_uid="1.2.3.4")
    np.testing.assert_array_equal(back, a)


def test_truncated_file_named_in_error(series):
    folder, paths = series
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_dicom_series(folder)
    assert paths[2].name in str(err.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_dicom_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM image files"):
        read_dicom_series(tmp_path / "empty")


def test_write_refuses_nonempty_folder_and_bad_shape(series, make_ct):
    folder, _ = series
    geom = Geometry.from_spacing((8, 7, 6), (1, 1, 2.0))
    with pytest.raises(InputError, match="not empty"):
        write_dicom_series(folder, make_ct((8, 7, 6)), geom)
    with pytest.raises(ValueError):
        write_dicom_series(folder.parent / "x", make_ct((8, 7, 5)), geom)


def test_a_failed_series_write_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from mpliver.errors import OutputError

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", full_disk)
    geom = Geometry.from_spacing((8, 6, 4), (1.0, 1.0, 2.0))
    with pytest.raises(OutputError, match="ENOSPC") as err:
        write_dicom_series(tmp_path / "ct", np.zeros(geom.shape, np.float32), geom)
    assert str(tmp_path / "ct") in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no half-written series, no staging folder left
