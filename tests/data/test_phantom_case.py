"""Synthetic case generator: determinism, labels and grids, motion, anatomy values (docs/method.md §6)."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.data.phantom import PhantomConfig, generate_case
from mpliver.data.phantom.config import GENERATOR_VERSION
from mpliver.data.phantom.motion import sample_motion
from mpliver.errors import ConfigError
from mpliver.io.checks import check_hu

TINY = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6))


@pytest.fixture(scope="module")
def fnh_case():
    return generate_case(5, 7, "FNH", TINY)


def test_same_seed_and_index_give_identical_arrays(fnh_case):
    again = generate_case(5, 7, "FNH", TINY)
    for phase in ("PV", "ART"):
        np.testing.assert_array_equal(fnh_case.phases[phase], again.phases[phase])
        np.testing.assert_array_equal(fnh_case.geometries[phase].affine, again.geometries[phase].affine)
    np.testing.assert_array_equal(fnh_case.label, again.label)
    np.testing.assert_array_equal(fnh_case.art_label, again.art_label)
    np.testing.assert_array_equal(fnh_case.motion_mm, again.motion_mm)


def test_case_does_not_depend_on_other_cases_generated_before():
    first = generate_case(3, 7, "HCC", TINY)
    generate_case(0, 7, "cyst", TINY)  # other cases in between must not change case 3
    generate_case(9, 7, "METS", TINY)
    again = generate_case(3, 7, "HCC", TINY)
    np.testing.assert_array_equal(first.phases["PV"], again.phases["PV"])
    other_index = generate_case(4, 7, "HCC", TINY)
    other_seed = generate_case(3, 8, "HCC", TINY)
    assert not np.array_equal(first.phases["PV"], other_index.phases["PV"])
    assert not np.array_equal(first.phases["PV"], other_seed.phases["PV"])


def test_volumes_labels_and_grids(fnh_case):
    c = fnh_case
    assert c.case_id == "PHANTOM_0005" and c.tumor_type == "FNH"
    assert c.phases["PV"].dtype == np.float32 and c.phases["PV"].shape == TINY.shape
    assert c.label.dtype == np.uint8 and c.label.shape == c.geometries["PV"].shape
    assert c.art_label.shape == c.geometries["ART"].shape == c.phases["ART"].shape
    assert set(np.unique(c.label).tolist()) == {0, 1, 2}
    assert set(np.unique(c.art_label).tolist()) == {0, 1, 2}
    for phase in ("PV", "ART"):
        geom = c.geometries[phase]
        np.testing.assert_allclose(np.diag(geom.affine)[:3], TINY.spacing)  # RAS-aligned, positive spacing
        assert np.count_nonzero(geom.affine[:3, :3] - np.diag(np.diag(geom.affine)[:3])) == 0
        image = c.phases[phase]
        check_hu(image)  # air and fat present: the HU check of io/checks.py passes
        assert np.all(image == np.round(image))
        body = image > -500
        assert (~body).sum() > 0.1 * image.size and np.median(image[~body]) < -950  # air outside the body
        fat = image[(image > -160) & (image < -50)]
        assert fat.size > 0.02 * image.size and -120 < np.median(fat) < -80  # fat around -100
        # Hyperdense structures outside the liver (aorta, bone, kidneys), so liver masking matters.
        lab = c.label if phase == "PV" else c.art_label
        assert np.count_nonzero((image > 200) & (lab == 0)) > 30
    # The ART grid differs from PV's (slice range / origin), the in-plane grid is the same.
    assert c.geometries["ART"].shape[:2] == c.geometries["PV"].shape[:2]


def test_tumour_label_is_inside_the_liver(fnh_case):
    from scipy import ndimage

    for lab in (fnh_case.label, fnh_case.art_label):
        tumour = lab == 2
        ring = ndimage.binary_dilation(tumour) & ~tumour
        assert np.all(lab[ring] >= 1), "a lesion touches the background: it is not inside the liver"


def test_recorded_motion_matches_the_shift_between_phases():
    # Larger motion than the default, so that a wrong sign or axis could not pass within the tolerance.
    config = PhantomConfig(
        shape=TINY.shape, spacing=TINY.spacing, motion_sd_mm=(6, 6, 8), motion_clip_mm=(12, 12, 16)
    )
    errors, measured, true = [], [], []
    for index, ttype in enumerate(("HEM", "HCC", "cyst", "FNH", "METS", "HEM")):
        c = generate_case(index, 21, ttype, config)
        for value in (2, 1):  # tumour (whole inside both grids), then liver (in-plane only: z may be cut)
            pv = np.argwhere(c.label == value).mean(axis=0)
            art = np.argwhere(c.art_label == value).mean(axis=0)
            shift = c.geometries["ART"].index_to_world(art) - c.geometries["PV"].index_to_world(pv)
            axes = 3 if value == 2 else 2
            errors.extend((np.abs(shift - c.motion_mm) / np.asarray(TINY.spacing))[:axes])
            measured.extend(shift[:axes])
            true.extend(c.motion_mm[:axes])
    errors = np.asarray(errors)  # in voxels
    assert errors.max() < 0.5 and errors.mean() < 0.2, errors
    assert np.corrcoef(measured, true)[0, 1] > 0.97


def test_motion_distribution_follows_spec():
    draws = np.array(
        [sample_motion(np.random.default_rng([3, i]), PhantomConfig()).shift_mm for i in range(3000)]
    )
    assert np.all(np.abs(draws[:, 2]) <= 10.0)
    sd = draws.std(axis=0)
    assert 1.8 < sd[0] < 2.2 and 1.8 < sd[1] < 2.2  # LR, AP: N(0, 2 mm)
    assert 3.3 < sd[2] < 4.1  # head-foot N(0, 4 mm) clipped at ±10 mm (clipping lowers the SD a little)
    assert np.all(np.abs(draws.mean(axis=0)) < 0.3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown tumour type"):
        generate_case(0, 0, "adenoma", TINY)
    with pytest.raises(ValueError, match="non-negative"):
        generate_case(-1, 0, "FNH", TINY)
    with pytest.raises(ConfigError):
        PhantomConfig(shape=(64, 64))
    with pytest.raises(ConfigError):
        PhantomConfig(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ConfigError, match="unknown phantom size"):
        PhantomConfig.preset("huge")


def test_config_round_trip_and_paper_size():
    cfg = PhantomConfig(shape=(80, 80, 24), spacing=(4.0, 4.0, 8.0), noise_sd=(10.0, 12.0))
    assert PhantomConfig.from_dict(cfg.to_dict()) == cfg
    paper = PhantomConfig.paper()
    assert paper.shape[:2] == (512, 512) and paper.spacing[:2] == (0.7, 0.7)
    assert GENERATOR_VERSION
