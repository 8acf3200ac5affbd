"""Table renderers: Table-1 (methods x six metrics) and Table-2 (DPC per type) as Markdown and CSV."""

import csv
import io

from mpliver.evaluation.tables import (
    comparison_csv,
    comparison_markdown,
    format_mean_sd,
    table1_csv,
    table1_markdown,
    table2_csv,
    table2_markdown,
)

SUMMARY_A = {"dpc": 80.123, "dpc_sd": 5.0, "dpc_undefined": 0, "dg": 82.5, "voe": 30.0, "voe_sd": 4.0,
             "voe_undefined": 0, "rvd": -2.0, "rvd_sd": 10.0, "rvd_undefined": 1, "assd": 1.5, "assd_sd": 0.5,
             "assd_undefined": 2, "rmsd": 2.25, "rmsd_sd": 0.75, "rmsd_undefined": 2, "n_cases": 10}
SUMMARY_B = {**SUMMARY_A, "dpc": 70.0, "assd": None, "assd_sd": None, "assd_undefined": 10}


def test_format_mean_sd():
    assert format_mean_sd(SUMMARY_A, "dpc") == "80.12 ± 5.00"
    assert format_mean_sd(SUMMARY_A, "assd") == "1.50 ± 0.50 (2 undefined)"
    assert format_mean_sd(SUMMARY_A, "dg") == "82.50"  # pooled: no SD
    assert format_mean_sd(SUMMARY_B, "assd") == "n/a (10 undefined)"
    assert format_mean_sd({"dpc": 50.0, "dpc_sd": None, "dpc_undefined": 0}, "dpc") == "50.00"


def test_table1_markdown_and_csv():
    md = table1_markdown({"paper": SUMMARY_A, "add": SUMMARY_B})
    lines = md.strip().splitlines()
    assert lines[0] == "| method | n | DPC (%) | DG (%) | VOE (%) | RVD (%) | ASSD (mm) | RMSD (mm) |"
    assert lines[2].startswith(
        "| paper | 10 | 80.12 ± 5.00 | 82.50 | 30.00 ± 4.00 | -2.00 ± 10.00 (1 undefined) | 1.50 ± 0.50 (2 ")
    assert len(lines) == 4
    rows = list(csv.DictReader(io.StringIO(table1_csv({"paper": SUMMARY_A, "add": SUMMARY_B}))))
    assert rows[0]["method"] == "paper" and float(rows[0]["dpc"]) == 80.123
    assert rows[0]["assd_undefined"] == "2"
    assert rows[1]["assd"] == "" and "dg_sd" not in rows[0]


def test_table2_per_type():
    per_type = {"paper": {"cyst": {**SUMMARY_A, "n_cases": 4}, "FNH": {**SUMMARY_B, "n_cases": 3}},
                "add": {"cyst": SUMMARY_B}}
    md = table2_markdown(per_type, types=["cyst", "FNH", "HEM"])
    lines = md.strip().splitlines()
    assert lines[0] == "| method | cyst | FNH | HEM |"
    assert lines[2] == "| paper | 80.12 ± 5.00 (n=4) | 70.00 ± 5.00 (n=3) | – |"
    assert lines[3].startswith("| add | 70.00 ± 5.00 (n=10) | – |")
    rows = list(csv.DictReader(io.StringIO(table2_csv(per_type))))
    pairs = [(r["method"], r["tumor_type"]) for r in rows]
    assert pairs == [("paper", "cyst"), ("paper", "FNH"), ("add", "cyst")]


def test_comparison_tables():
    comps = [{"method_a": "single_phase", "method_b": "paper", "key": "dice", "n_pairs": 20, "n_undefined": 0,
              "mean_diff": 4.2, "sd_diff": 1.1, "p_wilcoxon": 0.0012, "p_ttest": 0.002, "p_value": 0.0012,
              "test": "wilcoxon"}]
    md = comparison_markdown(comps)
    assert "| single_phase | paper | dice | 20 | 4.20 ± 1.10 | 0.0012 | wilcoxon |" in md
    rows = list(csv.DictReader(io.StringIO(comparison_csv(comps))))
    assert rows[0]["p_ttest"] == "0.002" and rows[0]["method_b"] == "paper"


def test_volume_calibration_next_to_dpc():
    from mpliver.evaluation.aggregate import summarize, volume_ratio

    records = [{"dice": 50.0, "rvd": 100.0, "ref_voxels": 10, "pred_voxels": 20, "intersection_voxels": 5},
               {"dice": 0.0, "rvd": 200.0, "ref_voxels": 30, "pred_voxels": 90, "intersection_voxels": 0}]
    assert volume_ratio(records) == (20 + 90) / (10 + 30)
    assert volume_ratio([{"dice": 1.0}]) is None and volume_ratio([{**records[0], "ref_voxels": 0}]) is None
    summary = summarize(records)
    md = table1_markdown({"m": summary}).strip().splitlines()
    assert md[0].endswith("| pred/ref volume |") and md[2].endswith("| 2.75 |")
    t2 = table2_markdown({"m": {"HCC": summary}}, calibration=True).strip().splitlines()
    assert t2[2].startswith("| m | 25.00 ± 35.36 (n=2) |")
    assert t2[3] == "| m: RVD (%) | 150.00 ± 70.71 |" and t2[4] == "| m: pred/ref volume | 2.75 |"
