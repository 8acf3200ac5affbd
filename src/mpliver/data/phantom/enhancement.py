"""Per-phase HU of every structure (SPEC §6 table). Ranges marked "gen" in the SPEC are suggested, not
published, values; each case draws its own values uniformly from these ranges.

`PHASES` are the two phases written: ART (late arterial, ~35 s) and PV (portal venous, 60-80 s).
"""

from __future__ import annotations

import numpy as np

PHASES = ("PV", "ART")

# structure: {phase: (low, high)} in HU; one value per case and phase.
STRUCTURE_HU: dict[str, dict[str, tuple[float, float]]] = {
    "liver": {"ART": (76.0, 86.0), "PV": (108.0, 122.0)},  # unenhanced 50-70 +20-30 / +50-60
    "aorta": {"ART": (290.0, 360.0), "PV": (150.0, 170.0)},
    "portal_vein": {"ART": (135.0, 155.0), "PV": (160.0, 180.0)},
    "hepatic_vein": {"ART": (60.0, 75.0), "PV": (140.0, 165.0)},  # not yet opacified in ART
    "ivc": {"ART": (85.0, 110.0), "PV": (120.0, 145.0)},
    "heart": {"ART": (220.0, 300.0), "PV": (140.0, 165.0)},
    "spleen": {"ART": (110.0, 135.0), "PV": (115.0, 130.0)},  # arciform in ART (see anatomy)
    "kidney_cortex": {"ART": (180.0, 230.0), "PV": (160.0, 190.0)},
    "kidney_medulla": {"ART": (70.0, 100.0), "PV": (150.0, 180.0)},
    "stomach_wall": {"ART": (95.0, 115.0), "PV": (85.0, 100.0)},
    "muscle": {"ART": (50.0, 60.0), "PV": (55.0, 65.0)},
}
# Unenhanced structures: one value per case, the same in both phases.
STATIC_HU: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "lung": (-870.0, -830.0),
    "fat": (-110.0, -90.0),
    "fluid": (5.0, 15.0),  # stomach contents, spinal canal
    "bone_cortex": (600.0, 800.0),
    "bone_cancellous": (180.0, 260.0),
    "disc": (70.0, 90.0),
}


def sample_hu_table(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Draw one case's HU values: `table[phase][structure]`."""
    table: dict[str, dict[str, float]] = {p: {} for p in PHASES}
    for name, ranges in STRUCTURE_HU.items():
        for phase in PHASES:
            lo, hi = ranges[phase]
            table[phase][name] = float(rng.uniform(lo, hi))
    for name, (lo, hi) in STATIC_HU.items():
        value = float(rng.uniform(lo, hi))
        for phase in PHASES:
            table[phase][name] = value
    return table


def sample_lesion_hu(
    rng: np.random.Generator, kind: str, table: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Draw the HU values of one lesion's parts, per phase (keys `<part>_<phase>`), from the case's table.

    cyst: 0-20 HU, no enhancement. FNH: Δ +40-70 ART (gen; here +45-70 so it stays over 2σ of the noise),
    Δ 0±5 PV (gen); scar dark. HEM: peripheral nodules at 0.6-0.9 × aorta in ART, centripetal fill-in near
    blood pool in PV, dark cleft. HCC: mosaic Δ +20-50 ART in 96 % (gen), washout ≈ 0.83 × liver PV with an
    enhancing capsule. METS: thin enhancing rim, hypodense core Δ -30 to -60 in PV (gen).
    """
    la, lp = table["ART"]["liver"], table["PV"]["liver"]
    u = rng.uniform
    if kind == "cyst":
        v = u(0.0, 20.0)
        return {"core_ART": v, "core_PV": v + u(-2.0, 2.0)}
    if kind == "FNH":
        return {
            "core_ART": la + u(45.0, 70.0),
            "core_PV": lp + u(-5.0, 5.0),
            "scar_ART": u(45.0, 60.0),
            "scar_PV": lp - u(30.0, 45.0),
        }
    if kind == "HEM":
        pool = 0.5 * (table["PV"]["aorta"] + table["PV"]["portal_vein"])
        return {
            "nodule_ART": table["ART"]["aorta"] * u(0.6, 0.9),
            "core_ART": u(40.0, 55.0),
            "core_PV": pool * u(0.92, 1.0),
            "unfilled_PV": u(60.0, 80.0),
            "cleft_ART": u(20.0, 35.0),
            "cleft_PV": u(20.0, 35.0),
        }
    if kind == "HCC":
        hyper = rng.random() < 0.96
        return {
            "core_ART": la + (u(20.0, 50.0) if hyper else u(0.0, 10.0)),
            "core_PV": lp * u(0.78, 0.88),
            "capsule_ART": la + u(20.0, 50.0),
            "capsule_PV": lp + u(15.0, 30.0),
            "mosaic_ART": u(8.0, 14.0),
            "mosaic_PV": u(3.0, 6.0),
        }
    if kind == "METS":
        return {
            "core_ART": la + u(-35.0, -10.0),
            "rim_ART": la + u(20.0, 40.0),
            "core_PV": lp + u(-60.0, -30.0),
            "rim_PV": lp + u(5.0, 20.0),
            "necrosis_ART": u(15.0, 30.0),
            "necrosis_PV": u(15.0, 30.0),
        }
    raise ValueError(f"unknown lesion type '{kind}'")
