"""Learning curves: the mean and SD over runs per epoch, by hand, and the figure file."""

from __future__ import annotations

import math

import pytest

from mpliver.evaluation.curves import learning_curve_png, mean_curve

RUN_A = [{"epoch": 1.0, "val_dice": 0.10}, {"epoch": 2.0, "val_dice": 0.30},
         {"epoch": 3.0, "val_dice": 0.50}]
RUN_B = [{"epoch": 1.0, "val_dice": 0.20}, {"epoch": 2.0, "val_dice": math.nan},
         {"epoch": 3.0, "val_dice": 0.70}]


def test_mean_curve_averages_each_epoch_over_the_runs_that_logged_it():
    curve = mean_curve([RUN_A, RUN_B])
    assert curve.epochs == [1, 2, 3]
    assert curve.mean == pytest.approx([15.0, 30.0, 60.0])
    assert curve.runs == [2, 1, 2]
    assert curve.sd[0] == pytest.approx(math.sqrt(2 * 5.0**2)) and curve.sd[1] is None
    assert curve.sd[2] == pytest.approx(math.sqrt(2 * 10.0**2))
    assert mean_curve([]).epochs == []


def test_learning_curve_png_is_written(tmp_path):
    path = learning_curve_png(tmp_path / "curve.png", {"add": [RUN_A, RUN_B], "paper": [RUN_A], "none": []})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
