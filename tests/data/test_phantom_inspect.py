"""`mpliver inspect` realism table (issue 13 item 4): measured figures against their reference ranges."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from mpliver.cli import app
from mpliver.data.phantom import PhantomConfig, write_cohort
from mpliver.data.phantom.realism import all_inside, realism_summary
from mpliver.data.phantom.reference import LESION_RANGES, STRUCTURE_RANGES
from mpliver.data.phantom.stats import phase_statistics

TINY = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6), phases=("EQP", "ART"))


def _row(kind: str, art: dict, eqp: dict) -> dict:
    base = {"lesion_hu": math.nan, "liver_hu": math.nan, "delta_hu": math.nan, "noise_sd": 12.0,
            "lesion_voxels": 10, "aorta_hu": math.nan, "portal_vein_hu": math.nan}
    return {"case": kind, "tumor_type": kind, "phases": {"ART": base | art, "EQP": base | eqp}}


def test_summary_cells_against_hand_values():
    rows = [
        _row("HCC", {"aorta_hu": 100.0, "liver_hu": 50.0, "delta_hu": 10.0}, {"liver_hu": 80.0}),
        _row("HCC", {"aorta_hu": 200.0, "liver_hu": 52.0, "delta_hu": 20.0}, {"liver_hu": 90.0}),
        _row("cyst", {"aorta_hu": 300.0, "liver_hu": 54.0, "delta_hu": -50.0}, {"liver_hu": 100.0}),
    ]
    s = realism_summary(rows, ["ART", "EQP"])
    aorta = s["aorta HU"]["ART"]
    assert aorta["median"] == 200.0 and aorta["cases"] == 3
    assert aorta["p5"] == pytest.approx(110.0) and aorta["p95"] == pytest.approx(290.0)  # linear percentiles
    assert (aorta["low"], aorta["high"]) == STRUCTURE_RANGES["ART"]["aorta"][:2] and aorta["inside"]
    assert s["liver HU"]["ART"]["median"] == 52.0 and not s["liver HU"]["ART"]["inside"]  # below 55
    assert s["liver HU"]["EQP"]["inside"]
    assert s["HCC Δ"]["ART"]["median"] == 15.0 and s["HCC Δ"]["ART"]["cases"] == 2
    assert s["cyst Δ"]["ART"]["median"] == -50.0
    assert s["aorta HU"]["EQP"]["cases"] == 0 and "inside" not in s["aorta HU"]["EQP"]
    assert set(s) == {"aorta HU", "portal vein HU", "liver HU", "HCC Δ", "cyst Δ", "noise SD"}
    assert not all_inside(s)


def test_phase_statistics_reads_the_structure_map():
    image = np.full((20, 20, 4), 60.0, dtype=np.float32)
    label = np.zeros(image.shape, dtype=np.uint8)
    label[5:15, 5:15] = 1
    structures = np.zeros(image.shape, dtype=np.uint8)
    image[0:3, 0:3], structures[0:3, 0:3] = 250.0, 1  # aorta
    image[17:, 17:], structures[17:, 17:] = 140.0, 2  # portal vein
    stats = phase_statistics(image, label, structures)
    assert stats.aorta_hu == 250.0 and stats.portal_vein_hu == 140.0 and stats.liver_hu == 60.0
    assert math.isnan(phase_statistics(image, label).aorta_hu)


def test_every_reference_range_is_ordered_and_sourced():
    for table in (STRUCTURE_RANGES, LESION_RANGES):
        for cells in table.values():
            for lo, hi, source in cells.values():
                assert lo < hi and source


def test_inspect_cli_on_an_eqp_art_cohort(tmp_path):
    root = write_cohort(tmp_path / "c", 10, seed=4, config=TINY, previews=False, workers=1)
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["phases"] == ["EQP", "ART"]
    realism = out["realism"]
    # The aorta measured on the structure map is far brighter in ART than in EQP, as the kinetics say.
    assert realism["aorta HU"]["ART"]["median"] > realism["aorta HU"]["EQP"]["median"] + 60
    assert realism["aorta HU"]["ART"]["cases"] == 10
    checked = runner.invoke(app, ["inspect", str(root), "--check"])
    assert checked.exit_code == (0 if out["all_inside"] else 1)
    assert "published range" in checked.output
