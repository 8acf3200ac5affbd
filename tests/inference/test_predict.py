"""`predict` on one study: geometry of the outputs, the uncertainty definition, liver masks on other grids,
TTA, and one-line errors for bad input. The end-to-end and real-data tests are in test_predict_e2e.py."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

import mpliver
from helpers.predict_toys import shifted, tiny_bundle
from mpliver.cli import main
from mpliver.errors import InputError
from mpliver.inference.bundle import load_bundle
from mpliver.inference.predict import _network, predict, uncertainty_from_probability
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import read_nifti, write_nifti


def test_uncertainty_definition_against_hand_values():
    p = np.array([0.5, 0.25, 0.75, 0.0, 1.0, 0.9], np.float32)
    u = uncertainty_from_probability(p)
    assert u.dtype == np.float32
    expected = [1.0, np.exp(1 - 3.0), np.exp(1 - 3.0), 0.0, 0.0, np.exp(1 - 9.0)]
    np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-12)


def test_outputs_lie_on_the_pv_grid(result, case, files):
    pv_geom = case.geometries["PV"]
    for array in (result.label, result.uncertainty, result.probability):
        assert array.shape == pv_geom.shape
    np.testing.assert_allclose(result.geometry.affine, read_nifti(files["PV"])[1].affine)
    assert result.label.dtype == np.uint8 and set(np.unique(result.label)) <= {0, 1, 2}
    # the liver part of the label map is the given liver mask (tumour lies inside it)
    np.testing.assert_array_equal(result.label >= 1, case.label >= 1)
    # u is the docs/method.md §3 formula of the final two-class softmax, recomputed here in float64
    p = result.probability.astype(np.float64)
    s_max, s_min = np.maximum(p, 1 - p), np.maximum(np.minimum(p, 1 - p), 1e-6)
    np.testing.assert_allclose(result.uncertainty, np.exp(1 - s_max / s_min), atol=1e-5)
    assert 0.0 <= result.uncertainty.min() and result.uncertainty.max() <= 1.0
    np.testing.assert_array_equal(result.label == 2, (p > 0.5) & (case.label >= 1))
    assert sum(r["voxels"] for r in result.lesions) == int(np.sum(result.label == 2))
    assert set(result.timings) == {"io", "liver", "registration", "preprocess", "network", "postprocess"}
    assert result.synthetic


def test_arrays_and_the_top_level_convenience(bundle_path, case, result):
    phases = {name: (case.phases[name], case.geometries[name]) for name in ("PV", "ART")}
    again = mpliver.predict(bundle_path, phases, liver_mask=(case.label, case.geometries["PV"]),
                            device="cpu")
    np.testing.assert_array_equal(again.label, result.label)
    np.testing.assert_allclose(again.probability, result.probability, atol=1e-5)


@pytest.mark.slow
def test_liver_mask_on_another_grid_is_placed_through_the_geometry(bundle_path, case, tmp_path):
    geom = case.geometries["PV"]
    # the same voxels stored with axes reversed and i flipped: a different array order, same world points
    flip = np.array([[0, 0, -1, geom.shape[0] - 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    perm_label = np.transpose(case.label, (2, 1, 0))[:, :, ::-1]
    perm_geom = Geometry(geom.affine @ flip, perm_label.shape)
    assert np.allclose(perm_geom.index_to_world([0, 0, geom.shape[0] - 1]), geom.index_to_world([0, 0, 0]))
    mask_file = write_nifti(tmp_path / "mask.nii.gz", (perm_label >= 1).astype(np.uint8) * 5, perm_geom)
    phases = {name: (case.phases[name], case.geometries[name]) for name in ("PV", "ART")}
    out = predict(bundle_path, phases, liver_mask=mask_file, liver_mask_values=(5,), device="cpu")
    np.testing.assert_array_equal(out.liver, case.label >= 1)
    # a coarser grid (2x the spacing) is resampled (nearest): nearly the same mask
    coarse_geom = Geometry.from_spacing((32, 32, 8), (10.0, 10.0, 20.0), origin=geom.origin + [2.5, 2.5, 5.0])
    world = coarse_geom.index_to_world(np.argwhere(np.ones(coarse_geom.shape, bool)))
    ijk = np.rint(geom.world_to_index(world)).astype(int)
    coarse = case.label[ijk[:, 0], ijk[:, 1], ijk[:, 2]].reshape(coarse_geom.shape)
    out = predict(bundle_path, phases, liver_mask=(coarse.astype(np.float32), coarse_geom), device="cpu")
    ref = case.label >= 1
    dice = 2 * np.sum(out.liver & ref) / (out.liver.sum() + ref.sum())
    assert dice > 0.85


class _RampNet(torch.nn.Module):
    """Tumour logit = phase 0's centre channel times a ramp along W: not flip-invariant."""

    def forward(self, phases):
        x = phases[0][:, 1]
        ramp = torch.linspace(-2.0, 3.0, x.shape[-1])
        return {"logits": torch.stack([torch.zeros_like(x), x * ramp], dim=1)}


def test_tta_is_the_mean_over_flips():
    rng = np.random.default_rng(0)
    stacks = rng.uniform(0, 1, (3, 2, 3, 8, 8)).astype(np.float32)
    ramp = np.linspace(-2.0, 3.0, 8)

    def prob(x):  # x (S, H, W) -> sigmoid of the ramp logit
        return 1 / (1 + np.exp(-(x * ramp)))

    x = stacks[:, 0, 1].astype(np.float64)
    expected = (prob(x) + prob(x[..., ::-1])[..., ::-1] + prob(x[:, ::-1])[:, ::-1]
                + prob(x[:, ::-1, ::-1])[:, ::-1, ::-1]) / 4
    got = _network(_RampNet(), stacks, 2, torch.device("cpu"), tta=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(_network(_RampNet(), stacks, 2, torch.device("cpu"), tta=False), prob(x),
                               atol=1e-6)


# ---- bad input: one line per case ---------------------------------------------------------------------


def _cli(bundle, out, *args):
    return main(["predict", "--model", str(bundle), "--out", str(out), *map(str, args)])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:"), err
    return err[-1]


def test_missing_phase(bundle_path, files, tmp_path, capsys):
    assert _cli(bundle_path, tmp_path, "--pv", files["PV"], "--liver-mask", files["label"]) == 2
    assert "missing phase ART" in _one_line_error(capsys)


def test_bundle_with_other_phases(files, tmp_path, capsys):
    three = tiny_bundle(tmp_path / "three.mpliver", phases=("PV", "ART", "DELAY"), num_phases=3)
    args = ["--pv", files["PV"], "--art", files["ART"], "--liver-mask", files["label"]]
    assert _cli(three, tmp_path, *args) == 2
    assert "missing phase DELAY" in _one_line_error(capsys)
    two = tiny_bundle(tmp_path / "two.mpliver")
    assert _cli(two, tmp_path, *args, "--phase", f"DELAY={files['ART']}") == 2
    assert "not one of the model's phases" in _one_line_error(capsys)


def test_corrupt_file(bundle_path, files, tmp_path, capsys):
    bad = tmp_path / "bad_0001.nii.gz"
    bad.write_bytes(files["ART"].read_bytes()[:2000])
    assert _cli(bundle_path, tmp_path, "--pv", files["PV"], "--art", bad, "--liver-mask", files["label"]) == 2
    line = _one_line_error(capsys)
    assert str(bad) in line and "truncated" in line
    notct = tmp_path / "label_as_image.nii.gz"
    notct.write_bytes(files["label"].read_bytes())
    args = ["--pv", files["PV"], "--art", notct, "--liver-mask", files["label"]]
    assert _cli(bundle_path, tmp_path, *args) == 2
    assert "Hounsfield" in _one_line_error(capsys)


def test_phases_of_different_studies(bundle_path, case, files, tmp_path, capsys):
    art, geom = case.phases["ART"], case.geometries["ART"]
    far = write_nifti(tmp_path / "far.nii.gz", art.astype(np.int16), shifted(geom, (0, 0, 2000.0)))
    assert _cli(bundle_path, tmp_path, "--pv", files["PV"], "--art", far, "--liver-mask", files["label"]) == 2
    assert "does not overlap the PV phase" in _one_line_error(capsys)
    # overlapping fields of view, but the ART scan holds only the top slices, not the liver
    top = art[:, :, -3:]
    top_geom = Geometry(geom.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, art.shape[2] - 3],
                                                [0, 0, 0, 1.0]]), top.shape)
    phases = {"PV": files["PV"], "ART": (top, top_geom)}
    with pytest.raises(InputError, match="covers only .* of the PV liver after registration"):
        predict(bundle_path, phases, liver_mask=files["label"], device="cpu", registration="none")


def test_no_liver_source(bundle_path, files, tmp_path, capsys):
    assert _cli(bundle_path, tmp_path, "--pv", files["PV"], "--art", files["ART"]) == 2
    assert "no liver model" in _one_line_error(capsys)


def test_cli_single_study_writes_every_output(bundle_path, files, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(bundle_path, out, "--pv", files["PV"], "--art", files["ART"], "--liver-mask", files["label"],
                "--timings", "--device", "cpu") == 0
    err = capsys.readouterr().err
    assert "network" in err and "registration" in err  # the --timings table
    pv_img = nib.load(str(files["PV"]))
    for name, dtype in (("CASE.nii.gz", np.uint8), ("CASE_uncertainty.nii.gz", np.float32)):
        img = nib.load(str(out / name))
        assert img.shape == pv_img.shape and img.get_data_dtype() == dtype
        np.testing.assert_allclose(img.affine, pv_img.affine)
        descrip = img.header["descrip"].tobytes().decode()
        assert "research software" in descrip and "synthetic" in descrip
    assert (out / "CASE_lesions.csv").read_text().startswith("lesion,volume_ml,")  # plain CSV (issue 12)
    assert (out / "CASE_lesions_notice.txt").read_text().startswith("mpliver research software")
    assert (out / "CASE_lesions.json").exists()
    with gzip.open(out / "CASE.nii.gz") as f:  # a valid gzip stream, written completely
        assert len(f.read()) > 0


def test_bundle_loaded_once_is_reused(bundle_path, files):
    bundle = load_bundle(bundle_path)
    a = predict(bundle, {"PV": files["PV"], "ART": files["ART"]}, liver_mask=files["label"], device="cpu")
    b = predict(bundle, {"PV": files["PV"], "ART": files["ART"]}, liver_mask=files["label"], device="cpu")
    np.testing.assert_array_equal(a.label, b.label)
