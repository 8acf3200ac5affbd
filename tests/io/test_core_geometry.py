import numpy as np
import pytest

from mpliver.io.geometry import Geometry, from_sitk, to_sitk
from mpliver.io.nifti import read_nifti, write_nifti


def _oblique_geometry(shape=(7, 6, 5)):
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    return Geometry.from_spacing(shape, (0.7, 0.8, 2.5), origin=(-10.5, 20.25, -300.0), direction=rot)


def test_nifti_roundtrip_keeps_geometry_and_values(tmp_path):
    geom = _oblique_geometry()
    arr = np.random.default_rng(0).normal(size=geom.shape).astype(np.float32)
    write_nifti(tmp_path / "a.nii.gz", arr, geom, description="hello")
    back, g2 = read_nifti(tmp_path / "a.nii.gz")
    assert np.array_equal(back, arr)
    np.testing.assert_allclose(g2.affine, geom.affine, atol=1e-5)
    np.testing.assert_allclose(g2.spacing, [0.7, 0.8, 2.5], rtol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_sitk_roundtrip_maps_index_to_same_world_point():
    geom = _oblique_geometry()
    arr = np.arange(np.prod(geom.shape), dtype=np.float32).reshape(geom.shape)
    img = to_sitk(arr, geom)
    # SimpleITK's LPS physical point of index (i, j, k) must be the RAS point with x, y negated.
    ijk = (3, 2, 4)
    lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
    ras = geom.index_to_world(np.array(ijk))
    np.testing.assert_allclose(lps, ras * [-1, -1, 1], atol=1e-9)
    assert img.GetPixel(ijk) == arr[ijk]
    back, g2 = from_sitk(img)
    assert np.array_equal(back, arr)
    np.testing.assert_allclose(g2.affine, geom.affine, atol=1e-9)


def test_same_grid_tolerance():
    g = _oblique_geometry()
    shifted = Geometry(g.affine + np.pad(np.array([[0, 0, 0, 0.01]]), ((0, 3), (0, 0))), g.shape)
    assert g.same_grid(g)
    assert not g.same_grid(shifted)
    assert not g.same_grid(Geometry(g.affine, (7, 6, 4)))


def test_singular_affine_refused():
    with pytest.raises(ValueError):
        Geometry(np.zeros((4, 4)), (2, 2, 2))


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os
    import stat

    from mpliver.io.atomic import write_text_atomic

    write_text_atomic(tmp_path / "x.txt", "hi")
    mode = stat.S_IMODE(os.stat(tmp_path / "x.txt").st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


def test_read_geometry_refuses_4d_volumes(tmp_path):
    import nibabel as nib

    from mpliver.errors import InputError
    from mpliver.io.nifti import read_geometry

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), str(tmp_path / "four.nii.gz"))
    with pytest.raises(InputError, match="four.nii.gz.*3-D"):
        read_geometry(tmp_path / "four.nii.gz")


@pytest.mark.parametrize("codes", ["RAS", "PLS", "LPI", "SRP"])
def test_with_axcodes_matches_nibabel_and_keeps_spacing_and_origin(codes):
    import nibabel as nib

    geom = _oblique_geometry()
    out = geom.with_axcodes(codes.lower() if codes == "PLS" else codes)
    assert "".join(nib.aff2axcodes(out.affine)) == codes  # nibabel's reading of the new affine
    np.testing.assert_allclose(out.spacing, geom.spacing)
    np.testing.assert_allclose(out.origin, geom.origin)
    assert out.shape == geom.shape


@pytest.mark.parametrize("bad", ["RA", "RAR", "RAX", "LRS"])
def test_with_axcodes_refuses_codes_that_do_not_name_three_axes(bad):
    with pytest.raises(ValueError, match="three different axes"):
        _oblique_geometry().with_axcodes(bad)
