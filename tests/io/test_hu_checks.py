"""HU plausibility (io/checks.check_hu) on every real CT file in ../shared/data, on phantom cases, and on the
bad variants built from them: HU + 1024 without rescale, 8-bit windowed values, MR-like values, blank, NaN."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from mpliver.cli import main
from mpliver.errors import InputError
from mpliver.io.checks import check_hu
from mpliver.io.dicom import read_dicom_series, write_dicom_series
from mpliver.io.nifti import read_nifti

REAL = ("lits117/ct.nii.gz", "totalseg_example/unenhanced_ct_small.nii.gz", "totalseg_example/pv_dicom")


def _read(path):
    return read_dicom_series(path) if path.is_dir() else read_nifti(path, dtype=np.float32)


def _plus_1024(a):
    """What a scanner stores when RescaleIntercept -1024 is left out: HU + 1024 (air at ~0)."""
    return np.maximum(a, -1024) + 1024


def _eight_bit(a, level=40.0, width=400.0):
    """A display export: window level/width mapped to 0..255 and saturated."""
    return np.clip((a - (level - width / 2)) / width * 255, 0, 255).round()


def _mr_like(a, seed=0):
    """Positive arbitrary-scale intensities: dark background and bone, bright fat, mid-grey organs."""
    a = np.clip(a, -1024, 1500)
    m = np.where(a < -500, 0.0, np.interp(a, [-500, -100, 0, 100, 300, 1500], [100, 900, 300, 600, 450, 80]))
    return np.abs(m + np.random.default_rng(seed).normal(0, 15, a.shape))


def _phantom_pv():
    from mpliver.data.phantom import PhantomConfig, generate_case

    case = generate_case(0, 3, "HCC", PhantomConfig(shape=(64, 64, 16), spacing=(5.0, 5.0, 10.0)))
    return case.phases["PV"].astype(np.float32)


def _volumes(shared_data):
    vols = {name: _read(shared_data / name)[0] for name in REAL}
    lits = vols["lits117/ct.nii.gz"]
    label, _ = read_nifti(shared_data / "lits117" / "label.nii.gz")
    depth = ndimage.distance_transform_edt(label > 0)
    c = np.unravel_index(np.argmax(depth), depth.shape)
    r = int(depth[c] / np.sqrt(3))  # the largest cube around the deepest liver voxel lies inside the liver
    vols["lits117 liver core"] = lits[c[0] - r:c[0] + r + 1, c[1] - r:c[1] + r + 1, c[2] - r:c[2] + r + 1]
    vols["phantom"] = _phantom_pv()
    return vols


@pytest.mark.slow  # decodes the JPEG 2000 PV series
def test_real_and_phantom_ct_pass_and_their_bad_variants_fail(shared_data):
    vols = _volumes(shared_data)
    core = vols["lits117 liver core"]
    assert np.min(core) > -50 and core.size > 20_000  # the crop really holds no air and no fat
    for name, a in vols.items():
        check_hu(a, name)  # legal CT passes
        for variant, cause in ((_plus_1024(a), "looks like HU \\+ 1024, rescale missing"),
                               (_eight_bit(a), "8-bit display values|range of several hundred"),
                               (_mr_like(a), "another modality")):
            with pytest.raises(InputError, match=cause) as err:
                check_hu(variant, name)
            assert "\n" not in str(err.value) and str(err.value).startswith(name)
    for bad, cause in ((np.zeros((8, 8, 4)), "all 256 voxels equal 0: a blank volume"),
                       (np.full((8, 8, 4), 40.0), "equal 40: a blank volume")):
        with pytest.raises(InputError, match=cause):
            check_hu(bad, "x.nii.gz")
    nan = vols["phantom"].copy()
    nan[3, 4, 5] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        check_hu(nan, "x.nii.gz")


def test_hu_plus_1024_message_gives_the_figures():
    a = _phantom_pv()
    with pytest.raises(InputError) as err:
        check_hu(_plus_1024(a), "pv.nii.gz")
    text = str(err.value)
    # the median of the voxels above -500 is the median of every voxel here (air sits at ~0 after the shift)
    median = np.median(_plus_1024(a))
    assert f"median {median:.0f}" in text and "0.0% of the voxels below -50" in text
    # a HU + 1024 crop without air (tissue only) is recognised as well
    tissue = _plus_1024(a)[_plus_1024(a) > 600]
    with pytest.raises(InputError, match="HU \\+ 1024"):
        check_hu(tissue, "crop.nii.gz")


def test_eight_bit_needs_saturation():
    """Integers in 0..255 are display values only when they saturate; a soft-tissue crop in HU is not."""
    rng = np.random.default_rng(1)
    liver = np.rint(rng.normal(110, 35, (30, 30, 10))).clip(1, 254)  # a crop inside the liver, in HU
    check_hu(liver, "core.nii.gz")
    liver.flat[::20] = 0  # 5 % at exactly 0
    with pytest.raises(InputError, match="8-bit display values"):
        check_hu(liver, "core.nii.gz")


@pytest.mark.slow  # JPEG 2000 decoding of the real series
def test_dicom_series_stored_as_hu_plus_1024_without_rescale(tmp_path, shared_data, capsys):
    """The real PV series written back with HU + 1024 and no Rescale tags: convert refuses in one line."""
    pv, geom = read_dicom_series(shared_data / "totalseg_example" / "pv_dicom")
    folder = tmp_path / "raw"
    write_dicom_series(folder, _plus_1024(pv), geom)
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
        ds.save_as(p)
    rc = main(["convert", "--pv", str(folder), "--art", str(folder), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(folder) in err and "HU + 1024, rescale missing" in err
    assert not (tmp_path / "ds").exists()
