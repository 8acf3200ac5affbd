"""Published (or, where none is, stated) ranges that a cohort's measured figures should fall in, per phase.

Each entry is (low, high, source). Sources: "issue 13 real" (real two-phase archives measured in issue 13),
"SPEC" (the table of docs/method.md §6, published values), "SPEC gen" (its suggestions, not published),
"fixture" (the real CT in ../shared/data, README), "LI-RADS"/"Brancatelli 2001"/... (docs/phantom.md),
"derived" (computed from other entries, the rule given), "chosen" (no source gives a number). Lesion entries
are Δ = median lesion − median liver of a case, as `mpliver inspect` measures them (edge voxels included).
"""

from __future__ import annotations

Ref = tuple[float, float, str]

# Vessel and liver HU per phase.
STRUCTURE_RANGES: dict[str, dict[str, Ref]] = {
    "NC": {
        "aorta": (30.0, 55.0, "unenhanced blood (textbook)"),
        "portal_vein": (30.0, 55.0, "unenhanced blood (textbook)"),
        "liver": (50.0, 70.0, "SPEC"),
    },
    "EART": {
        "aorta": (150.0, 400.0, "chosen (Foley 2000: arterial peak)"),
        "portal_vein": (30.0, 110.0, "chosen (not yet opacified)"),
        "liver": (50.0, 75.0, "chosen (unenhanced + a few HU)"),
    },
    "ART": {
        "aorta": (180.0, 375.0, "issue 13 real; SPEC 290-360"),
        "portal_vein": (90.0, 190.0, "SPEC ~145; chosen width"),
        "liver": (55.0, 73.0, "issue 13 real"),
    },
    "PV": {
        "aorta": (140.0, 200.0, "SPEC ~160; fixture 151"),
        "portal_vein": (133.0, 190.0, "fixture 133; SPEC 160-180"),
        "liver": (93.0, 125.0, "fixture 93; SPEC 110-120; LiTS 119"),
    },
    "EQP": {
        "aorta": (117.0, 131.0, "issue 13 real"),
        "portal_vein": (100.0, 140.0, "chosen (blood pool at equilibrium, near the aorta)"),
        "liver": (69.0, 103.0, "issue 13 real"),
    },
    "DELAY": {
        "aorta": (95.0, 135.0, "chosen (blood pool, below EQP)"),
        "portal_vein": (90.0, 135.0, "chosen (blood pool)"),
        "liver": (65.0, 100.0, "chosen (below EQP)"),
    },
}

# Lesion − liver Δ per type and phase.
LESION_RANGES: dict[str, dict[str, Ref]] = {
    "cyst": {
        "NC": (-70.0, -30.0, "derived: cyst 0-20 (SPEC) − liver 50-70 (SPEC)"),
        "ART": (-73.0, -35.0, "derived: cyst 0-20 (SPEC) − liver 55-73 (issue 13 real)"),
        "PV": (-125.0, -73.0, "derived: cyst 0-20 (SPEC) − liver 93-125"),
        "EQP": (-103.0, -49.0, "derived: cyst 0-20 (SPEC) − liver 69-103 (issue 13 real)"),
        "DELAY": (-100.0, -45.0, "derived: cyst 0-20 (SPEC) − liver 65-100"),
    },
    "FNH": {
        "NC": (-10.0, 5.0, "chosen (near iso unenhanced)"),
        "ART": (20.0, 70.0, "SPEC gen +40-70; chosen lower end for edge voxels"),
        "PV": (-5.0, 5.0, "SPEC gen 0 ± 5"),
        "EQP": (-5.0, 5.0, "Brancatelli 2001 (iso late)"),
        "DELAY": (-5.0, 5.0, "Brancatelli 2001 (iso late)"),
    },
    "HEM": {
        "NC": (-30.0, 0.0, "chosen (blood pool below liver)"),
        "ART": (-35.0, 15.0, "chosen (hypo centre, small nodules: SPEC pattern)"),
        "PV": (5.0, 70.0, "derived: blood pool (aorta 140-200) − liver (93-125), fill-in not complete"),
        "EQP": (5.0, 60.0, "derived: blood pool (aorta 117-131) − liver (69-103)"),
        "DELAY": (0.0, 60.0, "chosen (blood pool)"),
    },
    "HCC": {
        "NC": (-15.0, 0.0, "chosen (slightly hypo)"),
        "ART": (0.0, 50.0, "issue 13 real iso..+26; SPEC gen +20-50"),
        "PV": (-30.0, 0.0, "SPEC washout ≈ 0.83 × liver"),
        "EQP": (-30.0, 4.0, "issue 13 real"),
        "DELAY": (-30.0, 4.0, "issue 13 real (EQP)"),
    },
    "METS": {
        "NC": (-30.0, -5.0, "chosen"),
        "ART": (-35.0, 0.0, "chosen (hypo core, thin rim)"),
        "PV": (-60.0, -25.0, "SPEC gen −30 to −60; chosen upper end for the rim and edge voxels"),
        "EQP": (-50.0, -15.0, "chosen"),
        "DELAY": (-50.0, -15.0, "chosen"),
    },
}

NOISE_RANGE: Ref = (8.0, 25.0, "issue 13 (8-25); SPEC measured 10-16")


def structure_range(phase: str, name: str) -> Ref | None:
    return STRUCTURE_RANGES.get(phase, {}).get(name)


def lesion_range(kind: str, phase: str) -> Ref | None:
    return LESION_RANGES.get(kind, {}).get(phase)
