"""Tumour post-processing: the threshold, hysteresis and a minimum lesion volume, on hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.inference.postprocess import Postprocess, tumor_mask
from mpliver.inference.predict import predict

SPACING = (1.0, 1.0, 2.0)  # 2 mm^3 per voxel: 500 voxels make 1 mL


def _three_blobs():
    """A: 4x4x4 at p 0.9; B: 4x4x4 at p 0.6 (never confident); C: 2 voxels at p 0.95; all inside the liver."""
    p = np.zeros((20, 20, 10), np.float32)
    p[1:5, 1:5, 1:5] = 0.9
    p[10:14, 10:14, 1:5] = 0.6
    p[17, 17, 7:9] = 0.95
    liver = np.ones(p.shape, bool)
    return p, liver


def _blobs(mask):
    return (bool(mask[2, 2, 2]), bool(mask[11, 11, 2]), bool(mask[17, 17, 7]))


def test_default_is_the_threshold_inside_the_liver():
    p, liver = _three_blobs()
    liver[1:5, 1:5, 1:3] = False  # half of A lies outside the liver
    got = tumor_mask(p, liver, SPACING)
    np.testing.assert_array_equal(got, (p > 0.5) & liver)
    assert Postprocess().describe() == "probability > 0.5" and not Postprocess().prunes


def test_hysteresis_drops_components_never_seen_with_confidence():
    p, liver = _three_blobs()
    assert _blobs(tumor_mask(p, liver, SPACING, Postprocess(high=0.8))) == (True, False, True)
    # the border of a kept component stays whole: A's voxels at 0.6 are kept when the core is at 0.9
    p[1:5, 1:5, 1] = 0.6
    assert tumor_mask(p, liver, SPACING, Postprocess(high=0.8))[1:5, 1:5, 1].all()


def test_minimum_volume_drops_small_components():
    p, liver = _three_blobs()  # A and B: 64 voxels = 0.128 mL; C: 2 voxels = 0.004 mL
    assert _blobs(tumor_mask(p, liver, SPACING, Postprocess(min_volume_ml=0.01))) == (True, True, False)
    assert _blobs(tumor_mask(p, liver, SPACING, Postprocess(min_volume_ml=0.128))) == (True, True, False)
    assert _blobs(tumor_mask(p, liver, SPACING, Postprocess(min_volume_ml=0.13))) == (False, False, False)
    both = Postprocess(high=0.8, min_volume_ml=0.01)
    assert _blobs(tumor_mask(p, liver, SPACING, both)) == (True, False, False)
    assert both.describe() == "probability > 0.5, hysteresis 0.8, lesions >= 0.01 mL"


def test_components_touching_at_a_corner_are_one_lesion():
    p = np.zeros((6, 6, 6), np.float32)
    p[1, 1, 1] = 0.9
    p[2, 2, 2] = 0.6  # 26-connected to the confident voxel
    got = tumor_mask(p, None, (1.0, 1.0, 1.0), Postprocess(high=0.8))
    assert got[1, 1, 1] and got[2, 2, 2]


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"),
    ({"high": 0.4}, "high"), ({"high": 0.5}, "high"), ({"min_volume_ml": -1.0}, "min_volume_ml"),
])
def test_bad_settings_are_one_line_errors(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        Postprocess(**kwargs)


def test_predict_applies_the_postprocess(bundle_path, files):
    bundle = bundle_path
    phases = {"PV": files["PV"], "ART": files["ART"]}
    plain = predict(bundle, phases, liver_mask=files["label"], device="cpu")
    assert (plain.label == 2).any()  # the untrained network marks some tumour at p > 0.5
    low = predict(bundle, phases, liver_mask=files["label"], device="cpu", postprocess=Postprocess(0.3))
    none = predict(bundle, phases, liver_mask=files["label"], device="cpu",
                   postprocess=Postprocess(min_volume_ml=1e6))
    np.testing.assert_array_equal(plain.probability, none.probability)  # the network's output is the same
    assert (low.label == 2).sum() >= (plain.label == 2).sum() and not (none.label == 2).any()
    np.testing.assert_array_equal(none.label == 1, (plain.label >= 1))  # the liver stays
    assert none.lesions == []
    rule = none.report_meta()["probability_rule"]
    assert rule.endswith("label tumour = probability > 0.5, lesions >= 1e+06 mL")
    assert plain.report_meta()["probability_rule"].endswith("; label tumour = probability > 0.5")


def test_cli_refuses_a_hysteresis_below_the_threshold(bundle_path, files, tmp_path, capsys):
    code = main(["predict", "--model", str(bundle_path), "--out", str(tmp_path / "out"),
                 "--pv", str(files["PV"]),
                 "--art", str(files["ART"]), "--liver-mask", str(files["label"]), "--hysteresis", "0.4"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: high must be in (threshold 0.5, 1]"), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
