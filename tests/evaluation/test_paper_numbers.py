"""The paper's numbers as typed: consistent with the gains the paper's text states."""

from __future__ import annotations

import pytest

from mpliver.evaluation.paper_numbers import (
    METRICS,
    PAPER_ROWS,
    paper_difference,
    paper_metric,
    paper_type_dpc,
)


def test_table3_steps_match_the_gains_stated_in_the_text():
    # §3 Ablation: "+6.46% ... +3.79% ... +1.02% in DPC"; Robustness: ResNeXt-50 gain 4.81%
    assert paper_difference("single_phase", "add")[0] == pytest.approx(6.46)
    assert paper_difference("add", "sam")[0] == pytest.approx(3.79)
    assert paper_difference("sam", "paper")[0] == pytest.approx(1.02)
    gain, source = paper_difference("add_resnext50", "paper")
    assert gain == pytest.approx(80.12 - 75.31) and "Robustness" in source
    assert paper_difference("add_unet", "paper_unet") == (5.28, "§3 Robustness, U-Net")
    assert paper_difference("add_resnet50", "paper_resnet50")[0] == 4.50
    assert paper_difference("add_unet", "mc_fcn") is None


def test_rows_hold_six_metrics_and_table2_types():
    for name, row in PAPER_ROWS.items():
        assert tuple(row.metrics) == METRICS, name
        assert row.source
    # Table 1 top and Table 2's "Average" column print the same DPC
    for row, average in (("mc_fcn", 51.80), ("mw_unet", 73.37), ("pa_resseg", 77.26), ("paper", 80.12)):
        assert paper_metric(row) == average
        assert paper_type_dpc(row, "FNH") is not None
    assert paper_type_dpc("paper", "HCC") == 79.11 and paper_type_dpc("paper", "HEM") == 75.42
    assert paper_metric("ilf", "assd") == 14.2 and paper_metric("paper_unet") is None
    assert paper_type_dpc("add", "cyst") is None

