"""The five lesion types of docs/method.md §6: irregular soft-edged shapes, sizes, counts, internal structure
and per-phase enhancement.

A lesion is a sphere whose radius varies with direction by low-order polynomial terms of the unit vector
(degrees 2-4, i.e. low spherical-harmonic orders), so shapes are smooth but not round. Internal parts (FNH
scar, HEM nodules / fill-in front / cleft, HCC mosaic and capsule, METS rim and necrosis) are defined on the
normalised radius ρ = r / R(direction), so they follow the outline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from mpliver.data.phantom.enhancement import Kinetics, sample_lesion_hu
from mpliver.data.phantom.shapes import PointGrid, SmoothField, ramp
from mpliver.io.geometry import Geometry
from mpliver.io.labels import TUMOR_TYPES as LESION_TYPES

# Diameter range (mm) drawn log-uniformly, scaled from docs/method.md §6 to a field of view of ~30 cm.
DIAMETER_MM = {
    "cyst": (12.0, 60.0),
    "FNH": (25.0, 50.0),
    "HEM": (25.0, 70.0),
    "HCC": (20.0, 70.0),
    "METS": (10.0, 35.0),
}
# Probability of 1, 2, 3, ... lesions (METS: "often several").
COUNT_PROB = {
    "cyst": (0.7, 0.2, 0.1),
    "FNH": (0.85, 0.15),
    "HEM": (0.8, 0.2),
    "HCC": (0.85, 0.15),
    "METS": (0.25, 0.2, 0.2, 0.15, 0.1, 0.1),
}
# Lesion spread (LesionSpread; chosen, docs/phantom.md "Lesion spread"): types that present multifocal
# (metastases, multifocal HCC, polycystic livers), the lesion count of such a case, the satellites' smallest
# diameter, and the depth of a surface lesion's centre as a share of its radius (the capsule cuts 5-35 %
# of its diameter off).
MULTIFOCAL_TYPES = ("METS", "HCC", "cyst")
MULTIFOCAL_COUNT = (6, 20)
MULTIFOCAL_MIN_MM = 5.0
SUBCAPSULAR_DEPTH = (0.3, 0.9)
SPREAD_STREAM = 12  # the stream (seed, case, 12); cirrhosis has 11
# Amplitudes of the degree-2, 3 and 4 radius terms (relative); edge blur (mm) on top of partial volume.
SHAPE_AMPLITUDE = {
    "cyst": (0.04, 0.02, 0.0),
    "FNH": (0.08, 0.05, 0.06),
    "HEM": (0.1, 0.06, 0.05),
    "HCC": (0.08, 0.06, 0.06),
    "METS": (0.1, 0.07, 0.05),
}
EDGE_BLUR_MM = {"cyst": 0.3, "FNH": 1.5, "HEM": 1.0, "HCC": 1.0, "METS": 1.5}


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class Lesion:
    """One lesion in PV world coordinates (mm) with its per-phase HU (`hu["core_PV"]`, ...)."""

    kind: str
    center: np.ndarray
    radius: float
    hu: dict[str, float]
    quad: np.ndarray  # symmetric trace-free 3×3, spectral norm 1 (degree-2 term)
    cubic: np.ndarray  # 3 unit vectors: the degree-3 term Π (v·u)
    quartic: np.ndarray  # 4 unit vectors: the degree-4 term
    amplitude: tuple[float, float, float]
    features: dict = field(default_factory=dict)
    surface_depth: float | None = None  # a lesion at the liver surface: its centre's depth / radius

    @property
    def subcapsular(self) -> bool:
        """Whether the lesion reaches the liver surface and is drawn clipped to the liver (place_lesions)."""
        return self.surface_depth is not None

    @property
    def max_extent(self) -> float:
        """An upper bound of the lesion's radius including its edge blur (mm)."""
        return self.radius * (1.0 + sum(self.amplitude)) + EDGE_BLUR_MM[self.kind]

    def radius_factor(self, u: np.ndarray) -> np.ndarray:
        """R(direction) / R for unit vectors u (3, ...)."""
        a2, a3, a4 = (np.float32(a) for a in self.amplitude)
        q = sum(self.quad[i, j] * u[i] * u[j] for i in range(3) for j in range(3))
        c = np.prod([sum(v[i] * u[i] for i in range(3)) for v in self.cubic], axis=0)
        k = np.prod([sum(v[i] * u[i] for i in range(3)) for v in self.quartic], axis=0)
        return (1.0 + a2 * q + a3 * c + a4 * k).astype(np.float32)


def sample_lesion_shape(rng: np.random.Generator, kind: str, radius: float, kinetics: Kinetics) -> Lesion:
    """Draw a lesion's shape, HU values and type-specific features (its centre is set by `place_lesions`)."""
    a = rng.standard_normal((3, 3))
    quad = (a + a.T) / 2
    quad -= np.trace(quad) / 3 * np.eye(3)
    quad /= np.max(np.abs(np.linalg.eigvalsh(quad))) + 1e-12
    lesion = Lesion(
        kind,
        np.zeros(3),
        float(radius),
        sample_lesion_hu(rng, kind, kinetics),
        quad,
        _unit(rng, 3),
        _unit(rng, 4),
        SHAPE_AMPLITUDE[kind],
    )
    f = lesion.features
    diameter = 2 * radius
    if kind == "FNH":
        f["scar"] = bool(rng.random() < 1 / 3)  # central scar in 27-47 %
        f["spokes"] = _unit(rng, int(rng.integers(3, 6)))
    elif kind == "HEM":
        f["nodules"] = _unit(rng, int(rng.integers(4, 9)))
        f["nodule_radius"] = float(rng.uniform(0.18, 0.28))
        f["cleft"] = bool(diameter > 45.0)
    elif kind == "HCC":
        f["capsule"] = bool(rng.random() < 0.8)
        f["mosaic_seed"] = int(rng.integers(2**31))
    elif kind == "METS":
        f["necrosis"] = bool(diameter > 25.0)
    return lesion


def _soft_below(x: np.ndarray, edge: float, width: float) -> np.ndarray:
    return np.clip((edge - x) / np.float32(width) + 0.5, 0.0, 1.0)


def render_lesion(grid: PointGrid, lesion: Lesion, phase: str, hu: np.ndarray, tumour: np.ndarray,
                  liver: np.ndarray | None = None) -> None:
    """Composite one lesion into `hu` (in place) at the grid's points and raise `tumour` to its occupancy.
    A subcapsular lesion's occupancy is multiplied by the liver occupancy `liver`: the capsule cuts it."""
    ext = lesion.max_extent + 2 * float(np.max(grid.spacing))
    sl = grid.crop(lesion.center - ext, lesion.center + ext)
    if sl is None:
        return
    p = grid.sub(sl)
    v = p - lesion.center.astype(np.float32)[:, None, None, None]
    r = np.sqrt(np.sum(v * v, axis=0)) + np.float32(1e-6)
    u = v / r
    rad = np.float32(lesion.radius) * lesion.radius_factor(u)
    occ = ramp(r - rad, u, grid.spacing, EDGE_BLUR_MM[lesion.kind])
    if lesion.subcapsular:
        if liver is None:
            raise ValueError("a subcapsular lesion is drawn with the liver occupancy of the grid")
        occ = occ * liver[sl]
    rho = r / rad
    value = _lesion_value(lesion, phase, p, u, rho)
    h = hu[sl]
    h += occ * (value - h)
    np.maximum(tumour[sl], occ, out=tumour[sl])


def _lesion_value(lesion: Lesion, phase: str, p: np.ndarray, u: np.ndarray, rho: np.ndarray) -> np.ndarray:
    H, f, kind = lesion.hu, lesion.features, lesion.kind
    core = np.full(rho.shape, H.get(f"core_{phase}", H.get(f"unfilled_{phase}", 0.0)), dtype=np.float32)
    edge = 1.5 / max(lesion.radius, 1.0)  # inner transitions ~1.5 mm wide, in units of ρ
    if kind == "FNH" and f["scar"]:
        spokes = np.zeros_like(rho)
        for e in f["spokes"]:
            cosang = sum(np.float32(e[i]) * u[i] for i in range(3))
            spokes = np.maximum(spokes, np.clip((cosang - 0.975) / 0.01, 0, 1) * _soft_below(rho, 0.6, 0.1))
        scar = np.maximum(_soft_below(rho, 0.18, edge), spokes)
        core += scar * (H[f"scar_{phase}"] - core)
    elif kind == "HEM":
        # Centripetal fill-in: filled (blood pool) outside the front, unfilled inside; nodules from the start.
        filled = 1.0 - _soft_below(rho, H[f"fill_{phase}"], 0.1)
        core = H[f"unfilled_{phase}"] + filled * (core - np.float32(H[f"unfilled_{phase}"]))
        nod = np.zeros_like(rho)
        rn = f["nodule_radius"] * lesion.radius
        for e in f["nodules"]:
            c = lesion.center + e * lesion.radius * 0.82 * float(lesion.radius_factor(e[:, None])[0])
            d = np.sqrt(sum((p[i] - np.float32(c[i])) ** 2 for i in range(3)))
            nod = np.maximum(nod, _soft_below(d, rn, 1.5))
        core += nod * (H[f"nodule_{phase}"] - core)
        if f["cleft"]:
            cleft_edge = 0.22 * (
                1.0 + 0.4 * sum(lesion.quad[i, j] * u[i] * u[j] for i in range(3) for j in range(3))
            )
            cleft = _soft_below(rho, cleft_edge, 0.06)
            core += cleft * (H[f"cleft_{phase}"] - core)
    elif kind == "HCC":
        mosaic = SmoothField(
            np.random.default_rng(f["mosaic_seed"]),
            lesion.center - lesion.max_extent - 10,
            lesion.center + lesion.max_extent + 10,
            cell_mm=5.0,
        )
        core += mosaic(p) * np.float32(H[f"mosaic_{phase}"])
        if f["capsule"]:  # its own late-enhancing curve: dark or invisible early, bright late
            cap = 1.0 - _soft_below(rho, max(0.92, 1.0 - 1.5 / lesion.radius), max(edge, 0.04))  # ~1.5 mm
            core += cap * (H[f"capsule_{phase}"] - core)
    elif kind == "METS":
        rim = 1.0 - _soft_below(rho, max(0.9, 1.0 - 1.5 / lesion.radius), max(edge, 0.05))  # thin
        core += rim * (H[f"rim_{phase}"] - core)
        if f["necrosis"]:
            core += _soft_below(rho, 0.4, 0.1) * (H[f"necrosis_{phase}"] - core)
    return core


def sample_lesion_count(rng: np.random.Generator, kind: str) -> int:
    probs = np.asarray(COUNT_PROB[kind])
    return int(rng.choice(len(probs), p=probs / probs.sum())) + 1


@dataclass
class LesionSpread:
    """Where and how many lesions beyond the type's pattern, drawn from a case's own stream (so a case's other
    draws stay as they were): a multifocal burden for the types that spread (MULTIFOCAL_TYPES) and lesions
    that reach the liver surface. Both are off at 0; ranges in docs/phantom.md "Lesion spread"."""

    rng: np.random.Generator
    multifocal_prob: float = 0.0
    subcapsular_share: float = 0.0
    multifocal: bool = False

    @classmethod
    def draw(cls, seed: int, index: int, kind: str, multifocal_prob: float,
             subcapsular_share: float) -> LesionSpread | None:
        """The spread of case `index` (None when both shares are 0: no draw at all)."""
        if multifocal_prob <= 0 and subcapsular_share <= 0:
            return None
        rng = np.random.default_rng([int(seed), int(index), SPREAD_STREAM])
        multifocal = bool(rng.random() < multifocal_prob) and kind in MULTIFOCAL_TYPES
        return cls(rng, multifocal_prob, subcapsular_share, multifocal)

    def satellites(self, kind: str, n: int) -> np.ndarray:
        """Diameters (mm) of the lesions a multifocal case adds to its `n`: up to MULTIFOCAL_COUNT in all,
        log-uniform from MULTIFOCAL_MIN_MM to half the type's largest diameter."""
        if not self.multifocal:
            return np.zeros(0)
        total = int(self.rng.integers(MULTIFOCAL_COUNT[0], MULTIFOCAL_COUNT[1] + 1))
        hi = max(2 * MULTIFOCAL_MIN_MM, 0.5 * DIAMETER_MM[kind][1])
        return np.exp(self.rng.uniform(np.log(MULTIFOCAL_MIN_MM), np.log(hi), size=max(0, total - n)))

    def surface_depth(self) -> float | None:
        """For a lesion that reaches the surface, its centre's depth as a share of its radius; else None."""
        if self.subcapsular_share <= 0 or self.rng.random() >= self.subcapsular_share:
            return None
        return float(self.rng.uniform(*SUBCAPSULAR_DEPTH))


def _liver_depth(liver_mask: np.ndarray, geometry: Geometry,
                 edge_is_outside: bool = True) -> tuple[np.ndarray, Geometry]:
    """Distance (mm) from each liver voxel to the nearest non-liver voxel, on the liver's bounding box
    subsampled 2× in-plane (for speed), with the geometry of that coarse grid. With `edge_is_outside` False
    the liver goes on beyond the image's edge: the distance is to the liver's own boundary."""
    idx = np.argwhere(liver_mask)
    if len(idx) == 0:
        raise ValueError("the generated liver is empty (field of view too small?)")
    lo = np.maximum(idx.min(axis=0) - 1, 0)
    hi = idx.max(axis=0) + 2
    step = (2, 2, 1) if min(liver_mask.shape[:2]) >= 128 else (1, 1, 1)
    crop = liver_mask[lo[0] : hi[0] : step[0], lo[1] : hi[1] : step[1], lo[2] : hi[2]]
    affine = geometry.affine.copy()
    affine[:3, 3] = geometry.index_to_world(lo.astype(np.float64))
    affine[:3, :3] = affine[:3, :3] * np.asarray(step, dtype=np.float64)
    coarse = Geometry(affine, crop.shape)
    padded = np.pad(crop, 1) if edge_is_outside else np.pad(crop, 1, mode="edge")
    return ndimage.distance_transform_edt(padded, sampling=coarse.spacing)[1:-1, 1:-1, 1:-1], coarse


def _inplane_clearance(image: Geometry, coarse: Geometry, shape: tuple[int, ...]) -> np.ndarray:
    """Distance (mm) from each point of the (axis-aligned) `coarse` grid to the in-plane edge of `image`, as
    an array that broadcasts against `shape`."""
    out = np.full(tuple(shape[:2]) + (1,), np.inf)
    for a in range(2):
        world = coarse.origin[a] + coarse.affine[a, a] * np.arange(shape[a])
        index = (world - image.origin[a]) / image.affine[a, a]
        mm = np.minimum(index, image.shape[a] - 1 - index) * abs(float(image.affine[a, a]))
        out = np.minimum(out, mm[:, None, None] if a == 0 else mm[None, :, None])
    return out


def place_lesions(
    rng: np.random.Generator,
    kind: str,
    liver_mask: np.ndarray,
    geometry: Geometry,
    z_range: tuple[float, float],
    kinetics: Kinetics,
    lesion_scale: float = 1.0,
    extra_lesions: int = 0,
    spread: LesionSpread | None = None,
) -> list[Lesion]:
    """Draw the lesions of one case and place them inside the liver (PV grid), apart from each other.

    `z_range` bounds the world z of every lesion's extent, so lesions lie whole inside both phases' grids.
    Lesions that do not fit shrink (down to a few voxels); at least one lesion is always placed. `spread`
    (its own random stream) adds a multifocal burden and lets lesions reach the liver surface.
    """
    if kind not in LESION_TYPES:
        raise ValueError(f"unknown tumour type '{kind}' (expected one of {', '.join(LESION_TYPES)})")
    min_radius = 1.5 * float(np.max(geometry.spacing[:2]))  # a lesion spans at least 3 voxels
    image = geometry
    dist, geometry = _liver_depth(liver_mask, image)  # the image's edge counts as outside the liver
    spacing = geometry.spacing
    if spread is not None and spread.subcapsular_share > 0:  # depth below the liver's own boundary
        surface = _liver_depth(liver_mask, image, edge_is_outside=False)[0]
        clearance = _inplane_clearance(image, geometry, dist.shape)
    k_world = geometry.origin[2] + spacing[2] * np.arange(dist.shape[2])
    lo_d, hi_d = DIAMETER_MM[kind]
    n = sample_lesion_count(rng, kind) + int(extra_lesions)
    diameters = np.exp(rng.uniform(np.log(lo_d), np.log(hi_d), size=n)) * lesion_scale
    if spread is not None:
        diameters = np.concatenate([diameters, spread.satellites(kind, n) * lesion_scale])
    diameters = np.sort(diameters)[::-1]
    placed: list[Lesion] = []
    for diameter in diameters:
        lesion = sample_lesion_shape(rng, kind, max(diameter / 2, min_radius), kinetics)
        depth = spread.surface_depth() if spread is not None else None  # centre depth / radius, or None
        while True:
            ext = (
                lesion.max_extent + 1.5 + float(np.max(spacing[:2])) / 2
            )  # the coarse depth map errs by <½ voxel
            ok = dist >= ext
            if depth is not None:  # the centre `depth` radii (± ½ voxel) below the liver's boundary, which
                # cuts it, and the whole lesion inside the image in-plane (z: below)
                lesion.surface_depth = depth
                ok = (np.abs(surface - depth * lesion.radius) <= float(np.max(spacing[:2])) / 2) & (
                    clearance >= ext)
            z_ok = (k_world - ext >= z_range[0]) & (k_world + ext <= z_range[1])
            ok &= z_ok[None, None, :]
            idx = np.argwhere(ok)
            if len(idx) and placed:
                world = geometry.index_to_world(idx)
                for other in placed:
                    gap = np.linalg.norm(world - other.center, axis=1)
                    keep = gap >= ext + other.max_extent + 2.0
                    idx, world = idx[keep], world[keep]
            if len(idx):
                lesion.center = geometry.index_to_world(idx[rng.integers(len(idx))].astype(np.float64))
                placed.append(lesion)
                break
            if depth is not None:  # no room at the surface: placed whole inside, as any other lesion
                depth = lesion.surface_depth = None
                continue
            if lesion.radius * 0.85 < min_radius:
                break
            lesion.radius *= 0.85
            if kind == "HEM":
                lesion.features["cleft"] &= lesion.radius * 2 > 45.0
            if kind == "METS":
                lesion.features["necrosis"] &= lesion.radius * 2 > 25.0
    if not placed:  # a tiny liver: one lesion at its deepest point
        best = np.unravel_index(int(np.argmax(dist)), dist.shape)
        lesion = sample_lesion_shape(rng, kind, max(min_radius, 0.5 * float(dist[best])), kinetics)
        lesion.center = geometry.index_to_world(np.asarray(best, dtype=np.float64))
        placed.append(lesion)
    return placed
