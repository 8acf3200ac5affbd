"""Registration of ART onto the PV grid: known motions on hand-built scenes, an independent resampling
reference (SciPy), and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from helpers.prep_scene import make_case
from mpliver.data.registration import RigidTransform, register_phase
from mpliver.errors import InputError
from mpliver.io.geometry import Geometry
from mpliver.io.resample import resample_to_grid


def _mean_error(transform: RigidTransform, geom: Geometry, liver: np.ndarray, motion) -> float:
    pts = geom.index_to_world(np.argwhere(liver))
    return float(np.linalg.norm(transform.displacement(pts) - np.asarray(motion), axis=1).mean())


def test_resample_translation_matches_scipy():
    rng = np.random.default_rng(0)
    vol = ndimage.gaussian_filter(rng.normal(size=(20, 18, 10)), 2).astype(np.float32)
    src = Geometry.from_spacing(vol.shape, (2.0, 2.0, 3.0), origin=(5.0, -4.0, 10.0))
    ref = Geometry.from_spacing((16, 16, 8), (2.0, 2.0, 3.0), origin=(8.0, -2.0, 13.0))
    t = np.array([1.0, -3.0, 1.5])
    out = resample_to_grid(vol, src, ref, fill=0.0, transform=RigidTransform(np.eye(3), t))
    # reference: voxel (i,j,k) of ref is read at source index (ref_origin + ijk*sp + t - src_origin) / sp
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in ref.shape], indexing="ij"), 0).astype(float)
    sp = np.array([2.0, 2.0, 3.0])[:, None, None, None]
    coords = (ref.origin[:, None, None, None] + idx * sp + t[:, None, None, None]
              - src.origin[:, None, None, None]) / sp
    expected = ndimage.map_coordinates(vol.astype(np.float64), coords, order=1, mode="constant", cval=0.0)
    inside = np.all((coords >= 0) & (coords <= np.array(vol.shape)[:, None, None, None] - 1), axis=0)
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-4)


def test_none_leaves_the_generator_motion_as_error():
    motion = (3.0, -2.0, 4.0)
    pv, art, label, _, g_pv, g_art = make_case(motion=motion, art_origin=(4.0, -6.0, 8.0))
    out, tx = register_phase("none", pv, g_pv, art, g_art)
    assert out.shape == pv.shape
    assert _mean_error(tx, g_pv, label >= 1, motion) == pytest.approx(np.linalg.norm(motion))


def test_tumor_center_recovers_the_translation_exactly():
    # a shift of whole voxels (2 x 2.5, -1 x 2.5, 2 x 4 mm): the tumour voxels move rigidly, centroids exactly
    pv, art, label, art_label, g_pv, g_art = make_case(shape=(64, 64, 20), spacing=(2.5, 2.5, 4.0),
                                                        motion=(5.0, -2.5, 8.0), art_origin=(0.0, 0.0, 0.0))
    out, tx = register_phase("tumor-center", pv, g_pv, art, g_art, pv_label=label, moving_label=art_label)
    np.testing.assert_allclose(tx.translation, [5.0, -2.5, 8.0], atol=1e-6)
    # the resampled ART tumour sits on the PV tumour
    art_tumor = (art_label == 2).astype(np.float32)
    art_tumor_on_pv = resample_to_grid(art_tumor, g_art, g_pv, fill=0, transform=tx) > 0.5
    dice = 2 * (art_tumor_on_pv & (label == 2)).sum() / (art_tumor_on_pv.sum() + (label == 2).sum())
    assert dice > 0.95


def test_tumor_center_without_phase_label_is_a_clear_error():
    pv, art, label, _, g_pv, g_art = make_case()
    with pytest.raises(InputError, match="labelsTr_phases") as exc:
        register_phase("tumor-center", pv, g_pv, art, g_art, pv_label=label, moving_label=None,
                       moving_label_path="x/labelsTr_phases/C_0001.nii.gz")
    assert "\n" not in str(exc.value) and "C_0001" in str(exc.value)


@pytest.mark.parametrize("motion", [(3.0, -2.0, 6.0), (-1.5, 2.5, -7.0)])
def test_liver_registration_recovers_motion(motion):
    pv, art, label, _, g_pv, g_art = make_case(shape=(72, 72, 22), spacing=(2.2, 2.2, 4.0), motion=motion,
                                                art_origin=(3.0, -5.0, 6.0))
    liver = label >= 1
    _, tx = register_phase("liver", pv, g_pv, art, g_art, liver_mask=liver)
    assert _mean_error(tx, g_pv, liver, motion) < 1.5
    assert _mean_error(RigidTransform(), g_pv, liver, motion) > 5.0


def test_phase_without_overlap_names_the_file():
    pv, art, label, _, g_pv, _ = make_case()
    far = Geometry.from_spacing(art.shape, (2.5, 2.5, 4.0), origin=(0.0, 0.0, 5000.0))
    with pytest.raises(InputError) as exc:
        register_phase("liver", pv, g_pv, art, far, liver_mask=label >= 1,
                       moving_path="data/CASE_0001.nii.gz")
    msg = str(exc.value)
    assert "CASE_0001.nii.gz" in msg and "overlap" in msg and "\n" not in msg


def test_registration_failure_is_a_one_line_input_error():
    pv, art, label, _, g_pv, _ = make_case()
    slab = Geometry.from_spacing((64, 64, 2), (2.5, 2.5, 4.0))  # overlaps PV but holds two slices only
    with pytest.raises(InputError) as exc:
        register_phase("liver", pv, g_pv, art[:, :, :2], slab, liver_mask=label >= 1,
                       moving_path="CASE_0001.nii.gz")
    msg = str(exc.value)
    assert msg.startswith("CASE_0001.nii.gz: liver registration failed") and "\n" not in msg


def test_rotation_degrees_of_hand_built_matrices():
    a = np.radians(7.0)
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    assert RigidTransform(about_z, np.zeros(3)).rotation_degrees() == pytest.approx(7.0, abs=1e-9)
    axis = np.array([1.0, 2.0, 2.0]) / 3.0  # Rodrigues about a skew axis, 20 degrees
    b = np.radians(20.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    skew = np.eye(3) + np.sin(b) * k + (1 - np.cos(b)) * k @ k
    assert RigidTransform(skew, np.ones(3)).rotation_degrees() == pytest.approx(20.0, abs=1e-9)
    assert RigidTransform().rotation_degrees() == 0.0


def test_liver_registration_records_its_final_metric_and_round_trips():
    pv, art, label, _, g_pv, g_art = make_case(shape=(72, 72, 22), spacing=(2.2, 2.2, 4.0),
                                                motion=(3.0, -2.0, 6.0))
    _, tx = register_phase("liver", pv, g_pv, art, g_art, liver_mask=label >= 1)
    # Mattes mutual information as SimpleITK reports it: negative, lower is better
    assert tx.metric is not None and tx.metric < 0
    back = RigidTransform.from_dict(tx.to_dict())
    assert back.metric == tx.metric and np.allclose(back.matrix, tx.matrix)
    assert RigidTransform.from_dict({"matrix": np.eye(3).tolist(), "translation": [0, 0, 0]}).metric is None
    assert register_phase("none", pv, g_pv, art, g_art)[1].metric is None
