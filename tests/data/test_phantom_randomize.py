"""Domain randomisation of the phantom (issue 13 item 2): off by default, deterministic per (seed, case), and
each effect checked against an independent computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from mpliver.data.phantom import PhantomConfig, generate_case
from mpliver.data.phantom.artefacts import slice_profile_blur, streaks
from mpliver.data.phantom.noise import blurred_noise
from mpliver.errors import ConfigError
from mpliver.io.geometry import Geometry

TINY = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6))


def test_default_is_not_randomised():
    case = generate_case(1, 2, "HCC", TINY)
    assert set(case.acquisition) == {"circulation"}
    np.testing.assert_allclose(case.geometries["PV"].spacing, TINY.spacing)


def test_randomised_cases_are_deterministic_and_vary():
    config = TINY.randomized()
    first, again = generate_case(3, 5, "METS", config), generate_case(3, 5, "METS", config)
    for p in first.phases:
        np.testing.assert_array_equal(first.phases[p], again.phases[p])
        np.testing.assert_array_equal(first.label_of(p), again.label_of(p))
    spacings = set()
    for index in range(4):
        case = generate_case(index, 5, "HCC", config)
        sp = case.geometries["PV"].spacing
        lo, hi = config.inplane_mm
        assert lo <= sp[0] == sp[1] <= hi and config.slice_mm[0] <= sp[2] <= config.slice_mm[1]
        fov = np.asarray(case.geometries["PV"].shape) * sp  # the body keeps its size, the grid changes
        wanted = np.asarray(case.acquisition["field_of_view_mm"])
        np.testing.assert_allclose(fov, wanted, atol=float(sp.max()) / 2 + 1e-6)
        lo_f, hi_f = config.fov_scale
        assert np.all((wanted[:2] >= lo_f * 320 - 1e-6) & (wanted[:2] <= hi_f * 320 + 1e-6))
        assert wanted[2] == 192
        thickness = case.acquisition.get("slice_thickness_mm", sp[2])
        assert sp[2] - 1e-6 <= thickness <= max(5.0, sp[2]) + 1e-3
        spacings.add(round(float(sp[0]), 3))
    assert len(spacings) == 4


def test_paper_grid_uses_the_issue_ranges():
    config = PhantomConfig.paper().randomized()
    assert config.inplane_mm == (0.6, 0.9) and config.slice_mm == (0.6, 5.0)
    assert config.noise_sd == (8.0, 25.0)


def test_global_offset_and_no_lesion_cases():
    quiet = dataclasses.replace(TINY, noise_sd=(0.0, 0.0))
    base = generate_case(0, 1, "FNH", quiet)
    shifted = generate_case(0, 1, "FNH", dataclasses.replace(quiet, hu_offset=(40.0, 40.0)))
    for p in base.phases:
        inside = (base.phases[p] > -900) & (base.phases[p] < 2000)  # away from the clipping limits
        np.testing.assert_allclose(shifted.phases[p][inside] - base.phases[p][inside], 40.0, atol=1.0)
    empty = generate_case(0, 1, "FNH", dataclasses.replace(TINY, no_lesion_prob=0.999))
    assert empty.num_lesions == 0 and not (empty.label == 2).any() and (empty.label == 1).any()


def test_slice_profile_blur_matches_the_gaussian_width():
    volume = np.zeros((1, 1, 41), dtype=np.float32)
    volume[0, 0, 20] = 1.0
    assert slice_profile_blur(volume, 1.0) is volume
    out = slice_profile_blur(volume, 2.0)[0, 0]
    z = np.arange(41) - 20
    sigma = np.sqrt(np.sum(out * z**2) / np.sum(out))
    assert sigma == pytest.approx(np.sqrt(3.0) / 2.3548, rel=0.02) and out.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("sharpness", [0.0, 0.5, 1.0])
def test_noise_sd_for_every_kernel(sharpness):
    noise = blurred_noise(np.random.default_rng(0), (128, 128, 16), 15.0, 0.6, sharpness)
    assert noise.std() == pytest.approx(15.0, rel=0.03)
    # Sharper kernels put more of the noise power at high spatial frequency.
    hp = noise - ndimage.gaussian_filter(noise, (1.0, 1.0, 0))
    assert hp.std() / noise.std() > (0.5 if sharpness == 1.0 else 0.2)


def test_streaks_pass_through_the_source():
    geom = Geometry.from_spacing((64, 64, 6), (2.0, 2.0, 5.0), (-63.0, -63.0, 0.0))
    s = streaks(np.random.default_rng(3), geom, (0.0, -20.0), 50.0)
    assert s.shape == geom.shape and np.abs(s).max() <= 50.0 * 8 + 1e-3
    source = np.round(geom.world_to_index(np.array([0.0, -20.0, 0.0]))[:2]).astype(int)
    near = np.abs(s[source[0] - 1:source[0] + 2, source[1] - 1:source[1] + 2]).max()
    assert near > np.abs(s[:4, :4]).max()  # strongest at the dense source, weaker far away


def test_diaphragm_puts_muscle_on_the_livers_right_surface_and_leaves_the_liver_alone():
    grid = PhantomConfig(shape=(96, 96, 24), spacing=(3.5, 3.5, 8.0))
    quiet = dataclasses.replace(grid, noise_sd=(0.0, 0.0))
    off = generate_case(0, 3, "cyst", quiet)
    on = generate_case(0, 3, "cyst", dataclasses.replace(quiet, diaphragm_mm=(6.0, 6.0)))
    liver = off.label >= 1
    np.testing.assert_array_equal(on.label >= 1, liver)  # drawn last: the liver's own draws are unchanged
    geom = off.geometries["PV"]
    outside = ndimage.distance_transform_edt(~liver, sampling=geom.spacing)
    x = geom.index_to_world(np.argwhere(np.ones(liver.shape, bool)))[:, 0].reshape(liver.shape)
    x_liver = x[liver]
    shell = (outside > 0) & (outside <= 4.0) & (x > x_liver.mean() + 0.5 * x_liver.std())  # the right side
    mid = np.zeros(liver.shape, bool)
    mid[:, :, 8:16] = True
    shell &= mid
    assert shell.sum() > 50
    before, after = float(np.median(off.phases["PV"][shell])), float(np.median(on.phases["PV"][shell]))
    assert after - before > 40.0, (before, after)  # fat -> muscle against the lateral surface
    assert 20.0 < after < 90.0  # the muscle's PV attenuation (enhancement.py: 40-55 HU, up to +60)


def test_bad_randomisation_settings_are_refused():
    with pytest.raises(ConfigError, match="hu_scale"):
        PhantomConfig(hu_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="low <= high"):
        PhantomConfig(inplane_mm=(0.9, 0.6))
    with pytest.raises(ConfigError, match="no_lesion_prob"):
        PhantomConfig(no_lesion_prob=1.0)
    with pytest.raises(ConfigError, match="diaphragm_mm"):
        PhantomConfig(diaphragm_mm=(-1.0, 2.0))


def test_phantom_cli_with_randomize_and_four_phases(tmp_path):
    import json

    from typer.testing import CliRunner

    from mpliver.cli import app

    out = tmp_path / "c"
    args = ["phantom", str(out), "--cases", "5", "--shape", "64,64,20", "--spacing", "5,5,9.6", "--randomize",
            "--phases", "NC,ART,PV,DELAY", "--workers", "1", "--no-previews", "--folds", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "NC", "1": "ART", "2": "PV", "3": "DELAY"}
    assert meta["synthetic"]["config"]["noise_sd"] == [8.0, 25.0]
    assert meta["composition"] == {"cyst": 1, "FNH": 1, "HEM": 1, "HCC": 1, "METS": 1}
    case = meta["cases"]["PHANTOM_0000"]
    assert case["scan_time_s"]["NC"] is None and set(case["motion_mm_by_phase"]) == {"ART", "PV", "DELAY"}
    assert "spacing_mm" in case["acquisition"]



def test_unknown_phase_is_one_line_error(tmp_path, capsys):
    from mpliver.cli import main

    assert main(["phantom", str(tmp_path / "d"), "--phases", "PV,HBP"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown phase 'HBP'") and "\n" not in err


def test_lesion_free_case_is_registered_by_the_liver():
    """tumor-center registration has no tumour centre in a lesion-free case: it falls back to the liver."""
    from mpliver.data.registration import register_phase

    config = PhantomConfig(shape=(96, 96, 24), spacing=(3.2, 3.2, 7.0), no_lesion_prob=0.999)
    case = generate_case(2, 0, "HCC", config)
    assert case.num_lesions == 0
    pv, art = case.phases["PV"], case.phases["ART"]
    _, transform = register_phase("tumor-center", pv, case.geometries["PV"], art, case.geometries["ART"],
                                  liver_mask=case.label >= 1, pv_label=case.label,
                                  moving_label=case.art_label)
    assert transform.method == "liver"
    np.testing.assert_allclose(transform.translation, case.motion_mm, atol=3.0)
    with_tumour = generate_case(2, 0, "HCC", dataclasses.replace(config, no_lesion_prob=0.0))
    w = with_tumour
    _, t2 = register_phase("tumor-center", w.phases["PV"], w.geometries["PV"], w.phases["ART"],
                           w.geometries["ART"], pv_label=w.label, moving_label=w.art_label)
    assert t2.method == "tumor-center"
