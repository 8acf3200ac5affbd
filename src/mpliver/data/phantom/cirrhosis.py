"""A cirrhotic liver: regenerative nodules walled by fibrous septa, a nodular surface, a shrunken right lobe,
a larger spleen and perihepatic ascites.

HCC arises in a cirrhotic liver in most patients, and the real two-phase archives of issue 13 are HCC
studies. Their parenchyma is not the smooth texture of a healthy liver. It is a mosaic of nodules a few mm
across, walled by fibrous septa. The septa are darker than the nodules until the late phases, where they
take up contrast. A network that has only seen smooth livers may mark such parenchyma as tumour; the label
here stays liver. Every number and its source: docs/phantom.md ("Cirrhosis").

A case is cirrhotic with `PhantomConfig.cirrhosis_prob` (0 by default, so the paper-like cohort is
unchanged). The draws come from their own stream, seeded from (seed, case), so switching cirrhosis on leaves
every other draw of the case as it was: a cirrhotic cohort is the same cohort with diseased livers (the
lesions are placed inside the changed liver, so they move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mpliver.data.phantom.shapes import SmoothField

STREAM = 11  # the cirrhosis stream: np.random.default_rng([seed, case, STREAM])
CHUNK = 1 << 19  # points per nearest-seed query

NODULE_MM = (3.0, 10.0)  # regenerative nodule size (Brancatelli 2007: mostly < 1 cm)
# Share of the parenchyma's volume in the septa (chosen). The septum width follows from it and the nodule
# size: nodules of size L have about 3/L of wall area per volume, so septa of width w fill 3 w / L of it.
SEPTUM_SHARE = (0.08, 0.3)
NODULE_SD_HU = (2.0, 6.0)  # SD of the nodule-to-nodule HU offset, portal-venous and later (chosen)
NODULE_ART_SD_HU = (3.0, 9.0)  # the same in arterial phases: heterogeneous arterial perfusion (chosen)
# Septum HU minus liver HU at anchor times: unenhanced, arterial (τ 20 s), portal (τ 55 s), late (τ 150 s).
# Fibrosis is hypoattenuating before and early after injection and enhances late (Ohtomo 1993; Brancatelli
# 2007); the values are chosen.
SEPTUM_DELTA_HU = {"nc": (-8.0, -2.0), "art": (-25.0, -8.0), "pv": (-15.0, -3.0), "late": (2.0, 14.0)}
SEPTUM_ANCHOR_TAU_S = (20.0, 55.0, 150.0)
SURFACE_MM = (0.5, 2.5)  # amplitude of the surface nodularity (chosen)
RIGHT_LOBE = (0.78, 0.97)  # right-lobe size factor: atrophy (Brancatelli 2007)
LEFT_LOBE = (1.0, 1.2)  # left / caudate lobe size factor: hypertrophy
SPLEEN = (1.0, 1.4)  # spleen size factor: splenomegaly of portal hypertension
ASCITES_PROB = 0.4  # share of cirrhotic cases with perihepatic ascites (chosen)
ASCITES_MM = (2.0, 15.0)  # its thickness around the liver
ASCITES_HU = (0.0, 20.0)  # simple ascites: water to 20 HU (no enhancement)


@dataclass
class Cirrhosis:
    """One case's cirrhotic liver: its draws (severity, nodule and septum size, HU offsets per phase, lobe,
    spleen and ascites factors) and, once `place`d over the liver, the nodule seeds and the surface field."""

    severity: float
    nodule_mm: float
    septum_mm: float
    nodule_sd: float  # HU SD of each nodule's offset shared by every phase
    nodule_art_sd: dict[str, float]  # phase -> HU SD of its arterial-only offset
    septum_hu: dict[str, float]  # phase -> septum HU minus liver HU
    surface_mm: float
    right_lobe: float
    left_lobe: float
    spleen: float
    ascites_mm: float
    ascites_hu: float
    layout_seed: int
    seeds: cKDTree | None = None
    nodule_z: np.ndarray | None = None  # (n, 2): a shared and an arterial-only z-score per nodule
    surface: SmoothField | None = None

    def place(self, lo, hi) -> None:
        """Lay the nodules over the world box [lo, hi] (the liver's, mm): a jittered grid of seeds, one per
        nodule, so the nodules are of even size; and the surface field."""
        rng = np.random.default_rng(self.layout_seed)
        lo = np.asarray(lo, dtype=np.float64) - self.nodule_mm
        hi = np.asarray(hi, dtype=np.float64) + self.nodule_mm
        counts = np.maximum(1, np.ceil((hi - lo) / self.nodule_mm).astype(int))
        cells = np.stack(np.meshgrid(*[np.arange(n) for n in counts], indexing="ij"), -1).reshape(-1, 3)
        seeds = lo + (cells + rng.uniform(0.1, 0.9, cells.shape)) * self.nodule_mm
        self.seeds = cKDTree(seeds)
        self.nodule_z = rng.standard_normal((len(seeds), 2)).astype(np.float32)
        self.surface = SmoothField(rng, lo, hi, cell_mm=self.nodule_mm)

    def parenchyma(self, p: np.ndarray, phase: str, spacing: np.ndarray) -> np.ndarray:
        """HU offset of the parenchyma at world points `p` (3, N): each nodule's own offset, and the septa
        between nodules, each voxel taking the share of its extent across the wall that the septum fills."""
        if self.seeds is None or self.nodule_z is None:
            raise RuntimeError("Cirrhosis.place() must run before the liver is painted")
        out = np.empty(p.shape[1], np.float32)
        sp = np.asarray(spacing, dtype=np.float64)
        for start in range(0, p.shape[1], CHUNK):  # bounded memory on large grids
            pts = np.ascontiguousarray(p[:, start:start + CHUNK].T, dtype=np.float64)
            dist, idx = self.seeds.query(pts, k=2)
            a, b = self.seeds.data[idx[:, 0]], self.seeds.data[idx[:, 1]]
            gap = np.linalg.norm(b - a, axis=1)
            normal = (b - a) / gap[:, None]
            # distance to the wall (the bisecting plane of the two nearest seeds), and the voxel's extent
            # along the wall's normal (as shapes.ramp measures it)
            h = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2.0 * gap)
            v = np.sqrt(((normal * sp) ** 2).sum(axis=1))
            w = 0.5 * self.septum_mm
            septum = np.clip(np.minimum(h + 0.5 * v, w) - np.maximum(h - 0.5 * v, -w), 0.0, None) / v
            z = self.nodule_z[idx[:, 0]]
            nodule = z[:, 0] * self.nodule_sd + z[:, 1] * self.nodule_art_sd[phase]
            out[start:start + len(pts)] = nodule * (1.0 - septum) + self.septum_hu[phase] * septum
        return out

    def bumps(self, p: np.ndarray) -> np.ndarray:
        """Surface nodularity (mm), added to the liver's signed distance near its surface."""
        if self.surface is None:
            raise RuntimeError("Cirrhosis.place() must run before the liver is painted")
        return self.surface(p) * np.float32(self.surface_mm)

    def describe(self) -> dict:
        """The draws recorded in dataset.json."""
        return {"severity": round(self.severity, 3), "nodule_mm": round(self.nodule_mm, 2),
                "septum_mm": round(self.septum_mm, 2), "ascites_mm": round(self.ascites_mm, 1)}


def _septum_delta(tau: float | None, anchors: dict[str, float]) -> float:
    """Septum minus liver HU at circulation time `tau`: the anchors, linear between them in τ."""
    if tau is None or tau <= 0:
        return anchors["nc"]
    t_art, t_pv, t_late = SEPTUM_ANCHOR_TAU_S
    xs, ys = [0.0, t_art, t_pv, t_late], [anchors["nc"], anchors["art"], anchors["pv"], anchors["late"]]
    return float(np.interp(tau, xs, ys))


def sample_cirrhosis(seed: int, index: int, prob: float, taus: dict[str, float | None],
                     arterial: dict[str, float]) -> Cirrhosis | None:
    """Case `index`'s cirrhosis, or None (a healthy liver), from its own stream. `taus`: each phase's
    circulation time (None unenhanced); `arterial`: each phase's arterial weight (0..1)."""
    if prob <= 0:
        return None
    rng = np.random.default_rng([int(seed), int(index), STREAM])
    if rng.random() >= prob:
        return None
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    severity = float(rng.uniform(0.3, 1.0))
    sd, art_sd = u(NODULE_SD_HU) * severity, u(NODULE_ART_SD_HU) * severity
    anchors = {k: u(r) * severity for k, r in SEPTUM_DELTA_HU.items()}
    ascites = u(ASCITES_MM) if rng.random() < ASCITES_PROB else 0.0
    nodule = u(NODULE_MM)
    return Cirrhosis(
        severity=severity,
        nodule_mm=nodule,
        septum_mm=u(SEPTUM_SHARE) * nodule / 3.0,
        nodule_sd=sd,
        nodule_art_sd={p: art_sd * float(arterial.get(p, 0.0)) for p in taus},
        septum_hu={p: _septum_delta(t, anchors) for p, t in taus.items()},
        surface_mm=u(SURFACE_MM) * severity,
        right_lobe=1.0 - (1.0 - u(RIGHT_LOBE)) * severity,
        left_lobe=1.0 + (u(LEFT_LOBE) - 1.0) * severity,
        spleen=1.0 + (u(SPLEEN) - 1.0) * severity,
        ascites_mm=ascites,
        ascites_hu=u(ASCITES_HU),
        layout_seed=int(rng.integers(0, 2**63 - 1)),
    )


def apply_cirrhosis(anatomy, cirrhosis: Cirrhosis) -> None:
    """Give `anatomy` (an anatomy.Anatomy) the cirrhotic liver: a shrunken right lobe, larger left and
    caudate lobes, a larger spleen; then lay the nodules over the new liver."""
    (c, s), *others = anatomy.liver_lobes
    others = [(c2, s2 * cirrhosis.left_lobe) for c2, s2 in others]
    anatomy.liver_lobes = [(c, s * cirrhosis.right_lobe), *others]
    c, s = anatomy.organs["spleen"]
    anatomy.organs["spleen"] = (c, s * cirrhosis.spleen)
    anatomy.cirrhosis = cirrhosis
    cirrhosis.place(*anatomy.liver_box())
