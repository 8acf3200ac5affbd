"""Per-case HU of every structure and lesion part at each phase, from the contrast kinetics of `kinetics`.

`STRUCTURE_CURVES` holds the curve ranges of the enhancing tissues, `STATIC_HU` the tissues that do not
enhance, `LESION_PARTS` the parts of the five lesion types. A lesion part's value at circulation time τ is
`unenhanced + liver_frac · (liver enhancement at τ) + its own curve's enhancement at τ`: FNH is liver tissue
with an added arterial supply, HCC mostly arterial with washout, and so on. Unenhanced values of lesion parts
are relative to the case's unenhanced liver unless marked absolute. Sources and choices: docs/phantom.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpliver.data.phantom.kinetics import (
    Circulation,
    Curve,
    CurveRange,
    Range,
    arterial_weight,
    sample_circulation,
    sample_phase_times,
)
from mpliver.io.labels import DEFAULT_PHASES

C = CurveRange  # unenhanced, delay, rise, peak, plateau, washout (s of circulation time after arrival)

# Blood-pool curves scale with dose / sqrt(cardiac output); parenchyma with the dose only.
BLOOD_POOL = ("aorta", "heart", "portal_vein", "hepatic_vein", "ivc")
STRUCTURE_CURVES: dict[str, CurveRange] = {
    "aorta": C((35, 50), (0, 0), (8, 14), (200, 290), (0.30, 0.40), (18, 30)),
    "heart": C((35, 50), (-3, -1), (8, 14), (170, 250), (0.30, 0.40), (18, 30)),
    "portal_vein": C((35, 50), (5, 9), (18, 28), (150, 200), (0.35, 0.45), (30, 50)),
    "hepatic_vein": C((35, 50), (14, 20), (25, 35), (95, 135), (0.40, 0.50), (40, 60)),
    "ivc": C((35, 50), (8, 14), (25, 35), (90, 130), (0.40, 0.50), (40, 60)),
    "liver": C((48, 65), (4, 8), (40, 60), (35, 65), (0.50, 0.75), (50, 90)),
    "spleen": C((40, 50), (2, 5), (10, 16), (75, 105), (0.50, 0.65), (25, 40)),
    "kidney_cortex": C((30, 40), (2, 5), (10, 16), (130, 180), (0.60, 0.75), (40, 70)),
    "kidney_medulla": C((30, 40), (4, 8), (35, 50), (120, 160), (0.70, 0.85), (60, 100)),
    "stomach_wall": C((35, 45), (4, 8), (15, 25), (45, 70), (0.50, 0.70), (40, 70)),
    "muscle": C((40, 55), (8, 12), (40, 60), (5, 15), (0.70, 0.90), (60, 120)),
}
# Unenhanced structures: one value per case, the same in every phase.
STATIC_HU: dict[str, Range] = {
    "air": (-1000.0, -1000.0),
    "lung": (-870.0, -830.0),
    "fat": (-110.0, -90.0),
    "fluid": (5.0, 15.0),  # stomach contents, gallbladder, spinal canal
    "bone_cortex": (600.0, 800.0),
    "bone_cancellous": (180.0, 260.0),
    "disc": (70.0, 90.0),
}


@dataclass(frozen=True)
class PartModel:
    """A lesion part: its own curve (unenhanced relative to the liver's unless `absolute`) plus a share
    `liver_frac` of the liver's enhancement."""

    curve: CurveRange
    liver_frac: Range = (0.0, 0.0)
    absolute: bool = False


_NONE = (0.0, 0.0)
_FLAT = dict(delay=(0, 0), rise=(1, 1), peak=_NONE, plateau=(1, 1), washout=(1, 1))
LESION_PARTS: dict[str, dict[str, PartModel]] = {
    "cyst": {"core": PartModel(C((0, 20), (20, 40), (60, 120), (0, 3), (1, 1), (1, 1)), absolute=True)},
    "FNH": {
        "core": PartModel(C((-4, 2), (1, 4), (8, 14), (45, 80), (0.0, 0.03), (8, 14)), (0.95, 1.05)),
        "scar": PartModel(C((-20, -12), (30, 60), (90, 150), (55, 85), (0.9, 1.0), (200, 400))),
    },
    "HEM": {  # blood-pool lesion: see `_hem_values`
        "unfilled": PartModel(C((35, 50), (10, 30), (60, 120), (5, 15), (1, 1), (1, 1)), absolute=True),
        "cleft": PartModel(C((20, 35), **_FLAT), absolute=True),
    },
    "HCC": {  # core peak: see HCC_VASCULARITY
        "core": PartModel(C((-10, 0), (2, 5), (8, 14), (35, 75), (0.2, 0.65), (15, 30)), (0.0, 0.25)),
        "capsule": PartModel(C((-8, -3), (10, 20), (30, 50), (70, 100), (0.85, 1.0), (200, 400))),
    },
    "METS": {
        "core": PartModel(C((-25, -10), (5, 15), (30, 60), (8, 25), (0.8, 1.0), (100, 200)), (0.0, 0.2)),
        "rim": PartModel(C((-5, 0), (2, 5), (8, 14), (30, 60), (0.5, 0.7), (20, 40)), (0.3, 0.6)),
        "necrosis": PartModel(C((15, 30), **_FLAT), absolute=True),
    },
}
# HCC arterial behaviour (probability, core peak range): hyper-, iso- or hypo-attenuating in the arterial
# phase.
HCC_VASCULARITY = {"hyper": (0.7, (35.0, 75.0)), "iso": (0.2, (12.0, 28.0)), "hypo": (0.1, (0.0, 12.0))}
HEM_POOL = {"fraction": (0.8, 1.0), "lag": (2.0, 6.0), "fill_start": (5.0, 15.0), "fill_s": (30.0, 90.0)}
# the METS rim is still seen in PV in 84 % (docs/method.md §6); otherwise its plateau is drawn from (0, 0.15)
METS_RIM_PERSISTS = 0.84


@dataclass
class Kinetics:
    """One case's circulation, scan times, tissue curves and the resulting HU table (`table[phase][name]`)."""

    phases: tuple[str, ...]
    circulation: Circulation
    times: dict[str, float | None]
    curves: dict[str, Curve]
    table: dict[str, dict[str, float]] = field(default_factory=dict)

    def tau(self, phase: str) -> float | None:
        return self.circulation.tau(self.times[phase])

    def arterial(self, phase: str) -> float:
        return arterial_weight(self.tau(phase))


def sample_kinetics(rng: np.random.Generator, phases: tuple[str, ...] = DEFAULT_PHASES,
                    timing_variety: float = 0.0) -> Kinetics:
    """Draw one case's circulation, phase times and tissue curves, and evaluate the HU table."""
    circ = sample_circulation(rng)
    times = sample_phase_times(rng, tuple(phases), circ, timing_variety)
    pool_scale = circ.dose / np.sqrt(circ.cardiac)
    curves = {name: rng_curve.sample(rng, pool_scale if name in BLOOD_POOL else circ.dose)
              for name, rng_curve in STRUCTURE_CURVES.items()}
    kin = Kinetics(tuple(phases), circ, times, curves)
    static = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in STATIC_HU.items()}
    for phase in phases:
        tau = kin.tau(phase)
        kin.table[phase] = {name: c.value(tau) for name, c in curves.items()} | static
    return kin


def sample_hu_table(rng: np.random.Generator, phases: tuple[str, ...] = DEFAULT_PHASES
                    ) -> dict[str, dict[str, float]]:
    """One case's HU values, `table[phase][structure]` (see `sample_kinetics`)."""
    return sample_kinetics(rng, phases).table


def _part_values(rng: np.random.Generator, model: PartModel, kin: Kinetics, dose: float,
                 peak: Range | None = None, plateau: Range | None = None) -> dict[str, float]:
    liver = kin.curves["liver"]
    r = model.curve
    if peak is not None or plateau is not None:
        r = CurveRange(r.unenhanced, r.delay, r.rise, peak or r.peak, plateau or r.plateau, r.washout)
    curve = r.sample(rng, dose, 0.0 if model.absolute else liver.unenhanced)
    frac = float(rng.uniform(*model.liver_frac))
    out = {}
    for phase in kin.phases:
        tau = kin.tau(phase)
        out[phase] = curve.value(tau) + frac * liver.enhancement(tau)
    return out


def sample_lesion_hu(rng: np.random.Generator, kind: str, kin: Kinetics) -> dict[str, float]:
    """HU of one lesion's parts per phase (keys `<part>_<phase>`) from the case's kinetics; HEM also gets
    its fill front `fill_<phase>` (normalised radius above which the lesion has filled) and HCC its mosaic
    amplitude `mosaic_<phase>`."""
    if kind not in LESION_PARTS:
        raise ValueError(f"unknown lesion type '{kind}'")
    dose = kin.circulation.dose
    out: dict[str, float] = {}

    def put(part: str, values: dict[str, float]) -> None:
        out.update({f"{part}_{p}": v for p, v in values.items()})

    parts = LESION_PARTS[kind]
    if kind == "HCC":
        names = list(HCC_VASCULARITY)
        probs = np.asarray([HCC_VASCULARITY[n][0] for n in names])
        vascularity = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        core = _part_values(rng, parts["core"], kin, dose, peak=HCC_VASCULARITY[vascularity][1])
        put("core", core)
        put("capsule", _part_values(rng, parts["capsule"], kin, dose))
        base, gain = rng.uniform(2.0, 5.0), rng.uniform(0.15, 0.35)
        liver = kin.table
        for p in kin.phases:  # heterogeneity grows with the tumour's own enhancement
            out[f"mosaic_{p}"] = float(base + gain * max(0.0, core[p] - liver[p]["liver"] + 10.0))
        out["vascularity"] = float(names.index(vascularity))
    elif kind == "METS":
        put("core", _part_values(rng, parts["core"], kin, dose))
        persists = rng.random() < METS_RIM_PERSISTS
        put("rim", _part_values(rng, parts["rim"], kin, dose, plateau=None if persists else (0.0, 0.15)))
        put("necrosis", _part_values(rng, parts["necrosis"], kin, dose))
    elif kind == "HEM":
        out.update(_hem_values(rng, kin, dose))
    else:
        for part, model in parts.items():
            put(part, _part_values(rng, model, kin, dose))
    return out


def _hem_values(rng: np.random.Generator, kin: Kinetics, dose: float) -> dict[str, float]:
    """Haemangioma: peripheral nodules follow the blood pool (a share of the aorta's enhancement, a few s
    late) from the start; the rest fills centripetally, the front moving inwards from `fill_start` over
    `fill_s` seconds; the centre stays at the unfilled value until reached; a cleft never fills."""
    u = lambda key: float(rng.uniform(*HEM_POOL[key]))  # noqa: E731
    fraction, lag, start, duration = u("fraction"), u("lag"), u("fill_start"), u("fill_s")
    unfilled_curve = LESION_PARTS["HEM"]["unfilled"].curve.sample(rng, dose)
    unfilled = {p: unfilled_curve.value(kin.tau(p)) for p in kin.phases}
    cleft = _part_values(rng, LESION_PARTS["HEM"]["cleft"], kin, dose)
    base = unfilled_curve.unenhanced
    aorta = kin.curves["aorta"]
    out: dict[str, float] = {}
    for p in kin.phases:
        tau = kin.tau(p)
        pool = unfilled[p] if tau is None else base + fraction * aorta.enhancement(tau - lag)
        pool = max(pool, unfilled[p])
        out[f"core_{p}"] = pool
        out[f"nodule_{p}"] = pool
        out[f"unfilled_{p}"] = unfilled[p]
        out[f"cleft_{p}"] = cleft[p]
        front = 1.1 if tau is None else 1.0 - (tau - lag - start) / duration
        out[f"fill_{p}"] = float(np.clip(front, 0.0, 1.1))
    return out
