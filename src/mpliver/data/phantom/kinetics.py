"""Contrast kinetics: attenuation over time after injection, one curve per tissue, and phases as time points.

A curve is `unenhanced + peak * f(τ)` with τ the circulation time after the bolus reaches the aorta: f is 0
before the tissue's onset (`delay`), rises smoothly (half cosine) to 1 over `rise` seconds, then washes out
exponentially (time constant `washout`) towards the equilibrium fraction `plateau`, which itself fades slowly
(renal clearance, `LATE_DECAY_S`). Every case draws its own circulation: the aortic arrival of the bolus, a
relative cardiac output (τ = (t − arrival) × cardiac, so a slow circulation stretches and delays every curve)
and a dose factor (iodine per kg of body weight: it scales every enhancement). Arterial phases are timed from
the bolus arrival (bolus tracking), portal-venous and later phases by a fixed delay after injection, as in
clinical protocols. Every number and its source: docs/phantom.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpliver.errors import ConfigError

LATE_DECAY_S = 1500.0  # chosen: the equilibrium level fades slowly (half of it in ~17 min)

# Phase name -> (timing reference, low, high) in seconds: "arrival" = after the bolus reaches the aorta (bolus
# tracking), "injection" = after the start of the injection; None = unenhanced.
PHASE_TIMING: dict[str, tuple[str, float, float] | None] = {
    "NC": None,  # unenhanced (non-contrast)
    "EART": ("arrival", 5.0, 10.0),  # early arterial: ~20-25 s after injection
    "ART": ("arrival", 12.0, 20.0),  # late arterial: ~25-35 s after injection
    "PV": ("injection", 60.0, 80.0),  # portal-venous
    "EQP": ("injection", 120.0, 180.0),  # equilibrium / transitional (2-3 min)
    "DELAY": ("injection", 180.0, 300.0),  # delayed (3-5 min)
}
PHASE_ALIASES = {"UNENHANCED": "NC", "PRE": "NC", "LAP": "ART", "LATE_ART": "ART", "EAP": "EART",
                 "EARLY_ART": "EART", "PVP": "PV", "VENOUS": "PV", "EQ": "EQP", "EQUILIBRIUM": "EQP",
                 "DELAYED": "DELAY"}
ARRIVAL_S = (10.0, 18.0)  # aortic arrival after injection start, at cardiac factor 1
CARDIAC = (0.75, 1.25)  # relative cardiac output (chosen)
DOSE = (0.8, 1.2)  # relative iodine dose per kg (chosen)


def parse_phases(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical phase names from 'PV,ART' or a list: known names and aliases, case-insensitive, no repeats.
    The first phase is the primary one."""
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    items = [p for p in items if p]
    out = []
    for item in items:
        key = item.upper()
        key = PHASE_ALIASES.get(key, key)
        if key not in PHASE_TIMING:
            raise ConfigError(f"unknown phase '{item}' (known: {', '.join(PHASE_TIMING)})")
        if key in out:
            raise ConfigError(f"phase {key} is given twice in '{','.join(items)}'")
        out.append(key)
    if not out:
        raise ConfigError("no phase given (e.g. PV,ART)")
    return tuple(out)


@dataclass(frozen=True)
class Circulation:
    """One case's bolus and circulation: aortic arrival (s after injection), relative cardiac output, dose."""

    arrival_s: float
    cardiac: float
    dose: float

    def tau(self, t: float | None) -> float | None:
        """Circulation time after arrival for a scan at `t` s after injection (None: unenhanced)."""
        return None if t is None else (t - self.arrival_s) * self.cardiac


def sample_circulation(rng: np.random.Generator) -> Circulation:
    cardiac = float(rng.uniform(*CARDIAC))
    arrival = float(rng.uniform(*ARRIVAL_S)) / cardiac  # a slow circulation delays the arrival
    return Circulation(arrival, cardiac, float(rng.uniform(*DOSE)))


ANY_TIME_S = (0.0, 300.0)  # timing variety: a scan anywhere from the injection to 5 minutes


def sample_phase_times(rng: np.random.Generator, phases: tuple[str, ...], circ: Circulation,
                       timing_variety: float = 0.0) -> dict[str, float | None]:
    """Scan time (s after injection start) of each phase, with its own jitter; None for NC. With
    `timing_variety` > 0 (domain randomisation) each contrast phase is, with that probability, taken at any
    time in ANY_TIME_S instead (a mistimed or differently defined protocol); its name stays."""
    out: dict[str, float | None] = {}
    for name in phases:
        timing = PHASE_TIMING[name]
        if timing is None:
            out[name] = None
            continue
        ref, lo, hi = timing
        t = float(rng.uniform(lo, hi))
        out[name] = t + circ.arrival_s if ref == "arrival" else t
        if timing_variety > 0 and rng.random() < timing_variety:
            out[name] = float(rng.uniform(*ANY_TIME_S))
    return out


@dataclass(frozen=True)
class Curve:
    """unenhanced + peak · f(τ); delays and durations in s of circulation time, `peak` in HU."""

    unenhanced: float
    delay: float
    rise: float
    peak: float
    plateau: float
    washout: float

    def enhancement(self, tau: float | None) -> float:
        """HU above the unenhanced value at circulation time `tau` (None: unenhanced scan)."""
        if tau is None or tau <= self.delay:
            return 0.0
        s = (tau - self.delay) / max(self.rise, 1e-6)
        if s <= 1.0:
            return self.peak * 0.5 * (1.0 - np.cos(np.pi * s))
        after = tau - self.delay - self.rise
        level = self.plateau * np.exp(-after / LATE_DECAY_S)
        return float(self.peak * (level + (1.0 - self.plateau) * np.exp(-after / max(self.washout, 1e-6))))

    def value(self, tau: float | None) -> float:
        return float(self.unenhanced + self.enhancement(tau))


Range = tuple[float, float]


@dataclass(frozen=True)
class CurveRange:
    """Ranges (low, high) each curve parameter is drawn from, uniformly."""

    unenhanced: Range
    delay: Range
    rise: Range
    peak: Range
    plateau: Range
    washout: Range

    def sample(self, rng: np.random.Generator, scale: float = 1.0, unenhanced_offset: float = 0.0) -> Curve:
        """A curve; `scale` multiplies the peak (dose, cardiac output), `unenhanced_offset` shifts the
        unenhanced value (lesions are drawn relative to the liver)."""
        u = lambda r: float(rng.uniform(*r))  # noqa: E731
        return Curve(u(self.unenhanced) + unenhanced_offset, u(self.delay), u(self.rise),
                     u(self.peak) * scale, u(self.plateau), u(self.washout))


def arterial_weight(tau: float | None) -> float:
    """How arterial a time point is (1 in the arterial window, 0 from the portal-venous phase on): drives the
    perfusion heterogeneity of spleen (arciform) and liver, which is seen in the arterial phase only."""
    if tau is None or tau <= 0:
        return 0.0
    return float(np.clip((45.0 - tau) / 20.0, 0.0, 1.0))
