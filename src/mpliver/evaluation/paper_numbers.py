"""The paper's reported numbers (seed paper, Tables 1-3 and the §3 robustness text), typed in once, with the
table and row each comes from, and the paper's claims about orderings that the experiment sets test.

Keys are the experiment sets' row names (`experiments.sets`): `paper` is the paper's full method ("Ours",
"SAM (Ours)", the last row of Table 3), the same numbers in every table. Table 1 labels the Dice-global column
"DP" and the surface distances "ASD"/"RSMD"; they are DG, ASSD and RMSD here.
"""

from __future__ import annotations

from dataclasses import dataclass

METRICS = ("dpc", "dg", "voe", "rvd", "assd", "rmsd")


@dataclass(frozen=True)
class PaperRow:
    """One reported row: where it is printed, its six metrics (%, %, %, %, mm, mm) and DPC per tumour type."""

    source: str
    metrics: dict[str, float]
    dpc_by_type: dict[str, float] | None = None


def _six(values: tuple[float, float, float, float, float, float]) -> dict[str, float]:
    return dict(zip(METRICS, values, strict=True))


_OURS = _six((80.12, 86.51, 30.08, -5.28, 2.81, 5.47))
_OURS_TYPES = {"cyst": 90.87, "FNH": 66.08, "HCC": 79.11, "HEM": 75.42, "METS": 83.27}

PAPER_ROWS: dict[str, PaperRow] = {
    # Table 1, top (and Table 2 per type)
    "mc_fcn": PaperRow("Table 1 top, MC-FCN; Table 2", _six((51.80, 71.63, 59.30, -5.92, 27.26, 30.45)),
                       {"cyst": 67.82, "FNH": 21.58, "HCC": 46.98, "HEM": 51.59, "METS": 61.07}),
    "mw_unet": PaperRow("Table 1 top, MW-UNet; Table 2", _six((73.37, 86.34, 37.10, 10.11, 10.73, 18.16)),
                        {"cyst": 83.07, "FNH": 64.18, "HCC": 64.80, "HEM": 71.42, "METS": 79.35}),
    "pa_resseg": PaperRow("Table 1 top, PA-ResSeg; Table 2", _six((77.26, 86.21, 33.46, 4.46, 3.71, 7.82)),
                          {"cyst": 85.70, "FNH": 73.13, "HCC": 71.89, "HEM": 74.63, "METS": 79.64}),
    "paper": PaperRow("Table 1 Ours / SAM (Ours); Table 2 Ours; Table 3 SP+MP+SAM+URIM", _OURS, _OURS_TYPES),
    # Table 1, bottom: fusion strategies, each with URIM
    "ilf": PaperRow("Table 1 bottom, ILF", _six((73.19, 83.13, 37.6, -17.69, 14.2, 18.15))),
    "dlf": PaperRow("Table 1 bottom, DLF", _six((75.87, 85.36, 35.14, -5.73, 4.45, 9.51))),
    "mw": PaperRow("Table 1 bottom, MW", _six((77.39, 85.52, 33.07, 5.43, 6.31, 8.89))),
    "pa": PaperRow("Table 1 bottom, PA", _six((78.24, 86.29, 32.46, 6.01, 3.39, 6.90))),
    # Table 3: ablation
    "single_phase": PaperRow("Table 3, SP", _six((68.85, 83.31, 40.07, -19.22, 21.53, 27.73))),
    "add": PaperRow("Table 3, SP+MP (FLF-add)", _six((75.31, 85.13, 35.97, -5.89, 5.00, 10.05))),
    "sam": PaperRow("Table 3, SP+MP+SAM", _six((79.10, 86.12, 31.22, -5.51, 3.44, 6.46))),
}
# the ResNeXt-50 rows of the backbones set are Table 3's MP and full rows
PAPER_ROWS["add_resnext50"] = PAPER_ROWS["add"]

# §3 "Robustness Validation": DPC gain of SAM + URIM over FLF-add per backbone (no absolute values printed)
PAPER_GAINS: dict[tuple[str, str], tuple[str, float]] = {
    ("add_unet", "paper_unet"): ("§3 Robustness, U-Net", 5.28),
    ("add_resnet50", "paper_resnet50"): ("§3 Robustness, ResNet-50", 4.50),
    ("add_resnext50", "paper"): ("§3 Robustness, ResNeXt-50", 4.81),
}


@dataclass(frozen=True)
class Claim:
    """The paper's claim that row `higher` scores a higher DPC than row `lower` in experiment set `set`."""

    label: str
    set: str
    lower: str
    higher: str


CLAIMS: tuple[Claim, ...] = (
    Claim("SP < MP (FLF-add)", "ablation", "single_phase", "add"),
    Claim("add < SAM", "ablation", "add", "sam"),
    Claim("SAM < SAM + URIM", "ablation", "sam", "paper"),
    Claim("SAM above ILF", "fusion", "ilf", "paper"),
    Claim("SAM above DLF", "fusion", "dlf", "paper"),
    Claim("SAM above MW", "fusion", "mw", "paper"),
    Claim("SAM above PA", "fusion", "pa", "paper"),
    Claim("ours above MC-FCN", "comparison", "mc_fcn", "paper"),
    Claim("ours above MW-UNet", "comparison", "mw_unet", "paper"),
    Claim("ours above PA-ResSeg", "comparison", "pa_resseg", "paper"),
    Claim("SAM + URIM above add, U-Net", "backbones", "add_unet", "paper_unet"),
    Claim("SAM + URIM above add, ResNet-50", "backbones", "add_resnet50", "paper_resnet50"),
    Claim("SAM + URIM above add, ResNeXt-50", "backbones", "add_resnext50", "paper"),
)


def paper_metric(row: str, key: str = "dpc") -> float | None:
    """The paper's value of metric `key` for `row` (None where the paper prints none)."""
    found = PAPER_ROWS.get(row)
    return None if found is None else found.metrics.get(key)


def paper_type_dpc(row: str, tumor_type: str) -> float | None:
    """The paper's DPC of `row` on one tumour type (Table 2; None where the paper prints none)."""
    found = PAPER_ROWS.get(row)
    return None if found is None or found.dpc_by_type is None else found.dpc_by_type.get(tumor_type)


def paper_difference(lower: str, higher: str) -> tuple[float, str] | None:
    """The paper's DPC difference higher − lower and its source, from the rows or the robustness gains."""
    if (lower, higher) in PAPER_GAINS:
        source, gain = PAPER_GAINS[(lower, higher)]
        return gain, source
    a, b = PAPER_ROWS.get(lower), PAPER_ROWS.get(higher)
    if a is None or b is None:
        return None
    return round(b.metrics["dpc"] - a.metrics["dpc"], 2), f"{a.source} vs {b.source}"
