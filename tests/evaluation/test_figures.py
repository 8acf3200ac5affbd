"""Report figures: the radiological display convention, contour colours read back from the PNG, and that
every figure function writes a valid image and refuses mismatched input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from mpliver.evaluation.figures import (
    confidence_png,
    display,
    overlay_png,
    read_log_csv,
    training_curves_png,
    tumor_slice_index,
    type_dpc_bars_png,
)


def _colour_pixels(png: np.ndarray, colour: str) -> np.ndarray:
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    if colour == "red":
        return np.argwhere((r > 0.7) & (g < 0.35) & (b < 0.35))
    return np.argwhere((b > 0.7) & (r < 0.35) & (g < 0.35))


def test_display_puts_anterior_up_and_patient_right_on_the_left():
    # slice frame: H (axis 0) grows towards the patient's right, W (axis 1) towards anterior
    s = np.zeros((5, 4))
    s[4, 0] = 1   # most right, most posterior
    s[0, 3] = 2   # most left, most anterior
    shown = display(s)
    assert shown.shape == (4, 5)
    assert shown[3, 0] == 1   # bottom row (posterior), left column (patient's right)
    assert shown[0, 4] == 2   # top row (anterior), right column (patient's left)


def test_overlay_draws_reference_red_and_prediction_blue(tmp_path):
    image = np.full((64, 64), 40.0)
    ref = np.zeros((64, 64), bool)
    pred = np.zeros((64, 64), bool)
    ref[20:40, 8:24] = True     # reference on the left
    pred[20:40, 40:56] = True   # prediction on the right
    path = overlay_png(tmp_path / "o.png", image, ref, pred, title="case")
    png = imread(path)
    red, blue = _colour_pixels(png, "red"), _colour_pixels(png, "blue")
    assert len(red) > 50 and len(blue) > 50
    # the legend sits at the lower right: compare the contours in the upper part only
    top = png.shape[0] * 0.7
    red_x = red[red[:, 0] < top][:, 1].mean()
    blue_x = blue[blue[:, 0] < top][:, 1].mean()
    assert red_x < blue_x
    with pytest.raises(ValueError, match="reference shape"):
        overlay_png(tmp_path / "bad.png", image, ref[:10], pred)


@pytest.mark.slow
def test_confidence_curves_and_bars_write_valid_pngs(tmp_path):
    image = np.random.default_rng(0).uniform(0, 1, (32, 32))
    conf = np.linspace(0, 1, 64).reshape(8, 8)
    ref = np.zeros((32, 32), bool)
    ref[10:20, 10:20] = True
    p1 = confidence_png(tmp_path / "c.png", image, conf, ref, ref, title="t")
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,val_loss,val_dice,lr,seconds,slices_per_s\n"
                   "1,1.2,1.3,0.1,0.01,2,4\n2,0.9,,0.3,0.01,2,4\n")
    rows = read_log_csv(log)
    assert rows[1]["train_loss"] == 0.9 and np.isnan(rows[1]["val_loss"])
    p2 = training_curves_png(tmp_path / "t.png", {"fold 0": rows, "fold 1": rows})
    summary = {"dpc": 70.0, "dpc_sd": 5.0, "n_cases": 3}
    paper = {"FNH": {"dpc": 80.0, "dpc_sd": None, "n_cases": 3}}
    p3 = type_dpc_bars_png(tmp_path / "b.png", {"add": {"FNH": summary, "HCC": summary}, "paper": paper})
    for p in (p1, p2, p3):
        png = imread(p)
        assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100
        assert png[..., :3].std() > 0.01   # not a blank canvas
    with pytest.raises(ValueError, match="2-D"):
        confidence_png(tmp_path / "x.png", image, conf[None])


def test_tumor_slice_index():
    ref = np.zeros((5, 4, 4), bool)
    ref[3, :2, :2] = True
    ref[1, 0, 0] = True
    assert tumor_slice_index(ref) == 3
    empty = np.zeros_like(ref)
    pred = np.zeros_like(ref)
    pred[4, 1, 1] = True
    assert tumor_slice_index(empty, pred) == 4
    assert tumor_slice_index(empty, empty) == 2
