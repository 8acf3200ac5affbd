"""The abdomen of one synthetic case: body wall, fat, spine, lungs, heart, spleen, kidneys, stomach, bowel
loops, gallbladder, aorta, IVC, and a textured liver with portal and hepatic vein trees inside.

Shapes are laid out on a canonical 360 × 360 × 190 mm abdomen (x to the patient's right, y anterior, z
superior: RAS) and scaled to the configured field of view, with per-case jitter. `render_anatomy` evaluates
the anatomy at any world points, so the ART phase is the same anatomy sampled at moved positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpliver.data.phantom.cirrhosis import Cirrhosis
from mpliver.data.phantom.shapes import (
    PointGrid,
    SmoothField,
    capsule,
    capsule_box,
    ellipsoid,
    elliptic_cylinder,
    ramp,
    smooth_min,
)

CANONICAL_FOV_MM = np.array([360.0, 360.0, 190.0])
Segment = tuple[np.ndarray, np.ndarray, float, float]  # start, end, radius at start, radius at end


@dataclass
class Anatomy:
    """One case's anatomy in world mm (RAS; the field of view is centred on the origin)."""

    scale: np.ndarray  # canonical mm -> world mm, per axis
    offset: np.ndarray  # world shift of all organs (mm)
    hu: dict[str, dict[str, float]]  # [phase][structure]
    body_semi: np.ndarray
    fat_mm: float
    liver_lobes: list[tuple[np.ndarray, np.ndarray]]  # (centre, semi-axes): right, left (and caudate) lobes
    liver_blend_mm: float
    liver_shape: SmoothField
    liver_shape_mm: float
    liver_texture: SmoothField
    texture_sd: dict[str, float]
    spleen_texture: SmoothField
    arterial: dict[str, float] = field(default_factory=dict)  # phase -> arterial weight (0..1)
    diaphragm_mm: float = 0.0  # muscle on the liver's dome, lateral and posterior surface (0 = fat there)
    organs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # ellipsoids
    tubes: dict[str, Segment] = field(default_factory=dict)  # aorta, IVC, main portal vein
    bowel: list[tuple[np.ndarray, np.ndarray, str]] = field(
        default_factory=list
    )  # loops: centre, semi, content
    portal_tree: list[Segment] = field(default_factory=list)
    hepatic_tree: list[Segment] = field(default_factory=list)
    cirrhosis: Cirrhosis | None = None  # a cirrhotic liver (cirrhosis.apply_cirrhosis), None: healthy

    def world(self, canonical) -> np.ndarray:
        return np.asarray(canonical, dtype=np.float64) * self.scale + self.offset

    def size(self, canonical) -> np.ndarray:
        return np.asarray(canonical, dtype=np.float64) * self.scale

    @property
    def surface_mm(self) -> float:
        """How far the surface fields may move the liver's surface (mm): each is bounded by ±3 SD."""
        bumps = self.cirrhosis.surface_mm if self.cirrhosis is not None else 0.0
        return 3.0 * (self.liver_shape_mm + bumps)

    def liver_box(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([c - s for c, s in self.liver_lobes], axis=0) - self.surface_mm
        hi = np.max([c + s for c, s in self.liver_lobes], axis=0) + self.surface_mm
        return lo, hi


def _rotate_towards(
    direction: np.ndarray, rng: np.random.Generator, angle_deg: float
) -> tuple[np.ndarray, ...]:
    """Two unit vectors at ±angle from `direction`, in a random plane through it."""
    d = direction / np.linalg.norm(direction)
    v = rng.standard_normal(3)
    v -= (v @ d) * d
    v /= np.linalg.norm(v) + 1e-12
    a = np.deg2rad(angle_deg)
    return np.cos(a) * d + np.sin(a) * v, np.cos(a) * d - np.sin(a) * v


def _branch(rng, start, direction, length, radius, depth, out: list[Segment]) -> None:
    direction = direction / np.linalg.norm(direction)
    end = start + direction * length
    out.append((start, end, radius, radius * 0.85))
    if depth == 0:
        return
    for child in _rotate_towards(direction, rng, rng.uniform(20.0, 45.0)):
        _branch(rng, end, child, length * rng.uniform(0.55, 0.8), radius * 0.7, depth - 1, out)


@dataclass(frozen=True)
class AnatomyVariety:
    """Ranges of the per-case anatomy draws (the phantom config's; wider with domain randomisation)."""

    body_scale: tuple[float, float] = (0.92, 1.03)  # in-plane size of the whole abdomen
    fat_mm: tuple[float, float] = (8.0, 22.0)  # subcutaneous fat (canonical mm)
    liver_variety: float = 0.0  # 0: the paper-like liver; 1: wider shape deformation, left lobe, caudate
    fov_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # max. shift of the body, fraction of the FOV
    diaphragm_mm: tuple[float, float] = (0.0, 0.0)  # muscle against the liver's upper-outer surface (mm)


def sample_anatomy(
    rng: np.random.Generator,
    fov_mm,
    hu: dict[str, dict[str, float]],
    arterial: dict[str, float] | None = None,
    variety: AnatomyVariety | None = None,
) -> Anatomy:
    """Draw one case's anatomy for a field of view `fov_mm` (3,), centred on the world origin. `arterial`
    (phase -> 0..1, see kinetics.arterial_weight) sets the arterial-phase perfusion heterogeneity."""
    variety = variety or AnatomyVariety()
    phases = list(hu)
    arterial = arterial if arterial is not None else {p: float(p in ("ART", "EART")) for p in phases}
    base = np.asarray(fov_mm, dtype=np.float64) / CANONICAL_FOV_MM
    jitter = np.array([rng.uniform(*variety.body_scale)] * 2 + [rng.uniform(0.95, 1.05)])
    scale = base * jitter
    offset = np.array([rng.normal(0, 4.0), rng.normal(0, 4.0), np.clip(rng.normal(0, 4.0), -6, 6)]) * base
    if any(variety.fov_shift):  # the field of view cuts through the body or misses part of the liver
        offset = offset + rng.uniform(-1.0, 1.0, 3) * np.asarray(variety.fov_shift) * np.asarray(fov_mm)
    tex_base, tex_art = float(rng.uniform(3.0, 5.0)), float(rng.uniform(1.0, 2.0))
    lo, hi = -np.asarray(fov_mm) / 2 - 30.0, np.asarray(fov_mm) / 2 + 30.0
    liver_scale = rng.uniform(0.92, 1.06, size=3)
    anat = Anatomy(
        scale=scale,
        offset=offset,
        hu=hu,
        body_semi=np.array([165.0, 115.0]) * scale[:2] * rng.uniform(0.97, 1.03, size=2),
        fat_mm=float(rng.uniform(*variety.fat_mm) * scale[0]),
        liver_lobes=[],
        liver_blend_mm=float(25.0 * scale[0]),
        liver_shape=SmoothField(rng, lo, hi, cell_mm=30.0 * base[0]),
        liver_shape_mm=float(6.0 * base[0] * (1.0 + variety.liver_variety * rng.uniform(0.0, 1.0))),
        liver_texture=SmoothField(rng, lo, hi, cell_mm=10.0),
        texture_sd={p: tex_base * (1.0 + tex_art * arterial[p] * 0.5) for p in phases},
        spleen_texture=SmoothField(rng, lo, hi, cell_mm=7.0),
        arterial=dict(arterial),
    )
    W, S = anat.world, anat.size
    right = (W([68.0 + rng.normal(0, 4), 2.0 + rng.normal(0, 4), 5.0]), S([72.0, 76.0, 72.0]) * liver_scale)
    v = variety.liver_variety
    left = (
        W([-25.0 + rng.normal(0, 5), 45.0, 20.0 + rng.normal(0, 4)]),
        S([rng.uniform(55.0 - 25.0 * v, 75.0 + 20.0 * v), 30.0, 40.0]) * liver_scale,
    )
    anat.liver_lobes = [right, left]
    if v > 0 and rng.random() < 0.5 * v:  # a prominent caudate lobe, next to the IVC
        anat.liver_lobes.append((W([15.0, -15.0, 15.0]), S([22.0, 18.0, 30.0]) * rng.uniform(0.8, 1.3)))
    j = lambda v, sd=4.0: np.asarray(v, dtype=np.float64) + rng.normal(0, sd, size=3)  # noqa: E731
    anat.organs = {
        "lung_right": (W([62.0, -15.0, 150.0]), S([75.0, 80.0, 85.0])),
        "lung_left": (W([-62.0, -15.0, 150.0]), S([70.0, 80.0, 80.0])),
        "heart": (W(j([-15.0, 25.0, 140.0])), S([65.0, 55.0, 50.0])),
        "spleen": (W(j([-88.0, -40.0, 20.0])), S([30.0, 48.0, 52.0]) * rng.uniform(0.85, 1.15)),
        "kidney_left": (W(j([-68.0, -52.0, -45.0])), S([27.0, 24.0, 52.0])),
        "kidney_right": (W(j([62.0, -55.0, -68.0])), S([26.0, 23.0, 50.0])),
        "stomach": (W(j([-52.0, 35.0, 35.0])), S([42.0, 33.0, 42.0]) * rng.uniform(0.8, 1.15)),
        # Under the liver's inferior surface: a fluid-filled, cyst-like structure that is not liver.
        "gallbladder": (W(j([42.0, 42.0, -48.0], 3.0)), S([15.0, 14.0, 30.0]) * rng.uniform(0.8, 1.15)),
    }
    for _ in range(int(rng.integers(4, 8))):  # bowel loops in the lower abdomen
        centre = [rng.uniform(-90.0, 90.0), rng.uniform(-10.0, 60.0), rng.uniform(-95.0, -35.0)]
        semi = rng.uniform([12.0, 12.0, 15.0], [22.0, 20.0, 30.0])
        anat.bowel.append((W(centre), S(semi), str(rng.choice(["air", "fluid", "mixed"], p=[0.3, 0.4, 0.3]))))
    r = float(np.mean(scale[:2]))
    aorta_xy = W([-15.0 + rng.normal(0, 3), -30.0, 0.0])
    ivc_xy = W([24.0 + rng.normal(0, 3), -24.0, 0.0])
    anat.tubes = {
        "aorta": (np.r_[aorta_xy[:2], -400.0], np.r_[aorta_xy[:2], W([0, 0, 90.0])[2]], 12.0 * r, 12.0 * r),
        "ivc": (np.r_[ivc_xy[:2], -400.0], np.r_[ivc_xy[:2], W([0, 0, 80.0])[2]], 11.0 * r, 12.0 * r),
        "portal_trunk": (W([5.0, -8.0, -45.0]), W([28.0, 5.0, -12.0]), 7.0 * r, 7.0 * r),
    }
    hilum = W([28.0, 5.0, -12.0])
    for direction, length, radius in (([1.0, -0.1, 0.25], 38.0, 6.0), ([-1.0, 0.9, 0.35], 42.0, 5.0)):
        d = np.asarray(direction) + rng.normal(0, 0.15, 3)
        _branch(rng, hilum, d * scale, length * r, radius * r, 3, anat.portal_tree)
    confluence = np.r_[ivc_xy[:2], W([0, 0, 55.0])[2]]
    for direction in ([1.0, 0.2, -0.45], [0.25, 1.0, -0.35], [-0.8, 1.0, -0.15]):
        d = np.asarray(direction) + rng.normal(0, 0.15, 3)
        _branch(rng, confluence, d * scale, 55.0 * r, 5.0 * r, 2, anat.hepatic_tree)
    if variety.diaphragm_mm[1] > 0:  # drawn last and only when on: the default cohort's draws stay the same
        anat.diaphragm_mm = float(rng.uniform(*variety.diaphragm_mm))
    return anat


# Structure map written beside the images (for `mpliver inspect`): a voxel carries a structure's code where
# that structure fills it (occupancy >= 0.95) and nothing painted later covers it.
STRUCTURE_CODES = {"aorta": 1, "portal_vein": 2, "hepatic_vein": 3, "spleen": 4, "kidney_cortex": 5,
                   "kidney_medulla": 6, "ivc": 7}


class _Painter:
    """Composites shapes into an HU volume with partial volume, tracking the liver's occupancy and the
    pure voxels of the structures in STRUCTURE_CODES."""

    def __init__(self, grid: PointGrid, background: float):
        self.grid = grid
        self.hu = np.full(grid.shape, background, dtype=np.float32)
        self.liver = np.zeros(grid.shape, dtype=np.float32)
        self.structures = np.zeros(grid.shape, dtype=np.uint8)

    def paint(self, lo, hi, occupancy, value, exclude_liver: bool = False, inside_liver: bool = False,
              tag: str | None = None):
        sl = self.grid.crop(lo, hi)
        if sl is None:
            return None
        p = self.grid.sub(sl)
        occ = occupancy(p)
        if inside_liver:
            occ = occ * self.liver[sl]
        h = self.hu[sl]
        if callable(value):  # evaluate only where the shape is present
            m = occ > 0
            h[m] += occ[m] * (value(p[:, m]) - h[m])
        else:
            h += occ * (np.float32(value) - h)
        if exclude_liver:
            self.liver[sl] *= 1.0 - occ
        codes = self.structures[sl]
        codes[occ > 0.05] = 0
        if tag is not None:
            codes[occ >= 0.95] = STRUCTURE_CODES[tag]
        return sl, occ


def render_anatomy(
    grid: PointGrid, anat: Anatomy, phase: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU volume of `phase` at the grid's points, the liver occupancy (0-1, vessels inside included) and the
    structure map (STRUCTURE_CODES). The scene is painted back to front, later layers over earlier ones."""
    T = anat.hu[phase]
    P = _Painter(grid, T["air"])
    _paint_trunk(P, anat, T, grid.spacing)
    _paint_organs(P, anat, T, grid.spacing, phase)
    _paint_liver(P, anat, T, grid.spacing, phase)
    _paint_displacing(P, anat, T, grid.spacing)
    _paint_spine(P, anat, T, grid.spacing)
    return P.hu, P.liver, P.structures


_BIG = 1e4  # mm: "unbounded" for a paint box


def _cyl(center, semi, sp, blur: float = 0.0):
    return lambda p: ramp(*elliptic_cylinder(p, center, semi), sp, blur)


def _ell(center, semi, sp, blur: float = 0.0):
    return lambda p: ramp(*ellipsoid(p, center, semi), sp, blur)


def _box(center, semi, margin: float = 4.0):
    return np.asarray(center) - semi - margin, np.asarray(center) + semi + margin


def _paint_trunk(P: _Painter, anat: Anatomy, T: dict, sp) -> None:
    """Subcutaneous fat, the muscle wall, the abdominal cavity's fat, paraspinal muscles, lungs and heart."""
    zlo, zhi = -_BIG, _BIG
    c0 = anat.offset[:2]
    body = anat.body_semi
    P.paint(
        [-body[0] - 5 + c0[0], -body[1] - 5 + c0[1], zlo],
        [body[0] + 5 + c0[0], body[1] + 5 + c0[1], zhi],
        _cyl(c0, body, sp),
        T["fat"],
    )
    wall = body - anat.fat_mm
    P.paint([-_BIG, -_BIG, zlo], [_BIG, _BIG, zhi], _cyl(c0, wall, sp), T["muscle"])
    cavity = wall - 10.0 * anat.scale[:2]
    P.paint([-_BIG, -_BIG, zlo], [_BIG, _BIG, zhi], _cyl(c0, cavity, sp), T["fat"])
    _paint_ascites(P, anat, sp, _cyl(c0, cavity, sp))
    for side in (-1.0, 1.0):  # paraspinal muscles
        c = anat.world([side * 32.0, -90.0, 0.0])[:2]
        s = anat.size([22.0, 16.0, 0])[:2]
        P.paint(
            [c[0] - s[0] - 5, c[1] - s[1] - 5, zlo],
            [c[0] + s[0] + 5, c[1] + s[1] + 5, zhi],
            _cyl(c, s, sp),
            T["muscle"],
        )
    for name in ("lung_right", "lung_left"):
        c, s = anat.organs[name]
        P.paint(*_box(c, s), _ell(c, s, sp), T["lung"])
    c, s = anat.organs["heart"]
    P.paint(*_box(c, s), _ell(c, s, sp), T["heart"])


def _paint_organs(P: _Painter, anat: Anatomy, T: dict, sp, phase: str) -> None:
    """Spleen (textured, brighter in arterial phases), kidneys (cortex and medulla), stomach and bowel."""
    c, s = anat.organs["spleen"]
    P.paint(
        *_box(c, s),
        _ell(c, s, sp, 1.0),
        lambda p: T["spleen"] + anat.spleen_texture(p) * np.float32(3.0 + 19.0 * anat.arterial.get(phase, 0)),
        tag="spleen",
    )
    for name in ("kidney_left", "kidney_right"):
        c, s = anat.organs[name]
        P.paint(*_box(c, s), _ell(c, s, sp), T["kidney_cortex"], tag="kidney_cortex")
        P.paint(*_box(c, s * 0.6), _ell(c, s * 0.6, sp, 2.0), T["kidney_medulla"], tag="kidney_medulla")
    c, s = anat.organs["stomach"]
    P.paint(*_box(c, s), _ell(c, s, sp), T["stomach_wall"])
    inner = s - 5.0
    level = c[1] + 0.3 * inner[1]

    def contents(p):
        air = ramp(level - p[1], None, sp)  # supine: air rises anteriorly (+y)
        return T["fluid"] + air * (T["air"] - T["fluid"])

    P.paint(*_box(c, inner), _ell(c, inner, sp), contents)
    for c, s, content in anat.bowel:
        P.paint(*_box(c, s), _ell(c, s, sp), T["stomach_wall"])
        fill = {"air": T["air"], "fluid": T["fluid"] + 15.0, "mixed": 0.5 * (T["air"] + T["fluid"])}[content]
        P.paint(*_box(c, s - 3.0), _ell(c, s - 3.0, sp), fill)


def _liver_distance(anat: Anatomy, sp):
    """The liver's signed distance (mm) and outward normal at points p (3, N): a smooth union of its lobes,
    perturbed near the surface by the shape field (and a cirrhotic liver's nodular surface)."""
    cirrhosis = anat.cirrhosis

    def liver_distance(p):
        (d1, n1), *others = [ellipsoid(p, c, s) for c, s in anat.liver_lobes]
        d = d1
        for d2, n2 in others:
            n1 = np.where(d <= d2, n1, n2)
            d = smooth_min(d, d2, anat.liver_blend_mm)
        # The surface fields are bounded (±3 SD), so they only matter near the surface.
        near = np.abs(d) < anat.surface_mm + 2.0 * float(np.max(sp))
        d[near] += anat.liver_shape(p[:, near]) * np.float32(anat.liver_shape_mm)
        if cirrhosis is not None:  # a nodular surface
            d[near] += cirrhosis.bumps(p[:, near])
        return d, n1

    return liver_distance


def _paint_ascites(P: _Painter, anat: Anatomy, sp, cavity) -> None:
    """Perihepatic ascites of a cirrhotic liver: fluid around the liver, in front, on the right and below,
    inside the abdominal cavity only (`cavity`: its occupancy). Painted before the organs and the liver,
    which lie over it."""
    cirrhosis = anat.cirrhosis
    if cirrhosis is None or cirrhosis.ascites_mm <= 0:
        return
    a = np.float32(cirrhosis.ascites_mm)
    liver_distance = _liver_distance(anat, sp)

    def ascites_occ(p):
        d, n = liver_distance(p)
        facing = np.clip(0.5 + 1.5 * (0.5 * n[0] + 0.7 * n[1] - 0.3 * n[2]), 0.0, 1.0)
        return ramp(d - a, n, sp, 0.8) * facing.astype(np.float32) * cavity(p)

    lo, hi = anat.liver_box()
    P.paint(lo - cirrhosis.ascites_mm, hi + cirrhosis.ascites_mm, ascites_occ, cirrhosis.ascites_hu)


def _paint_liver(P: _Painter, anat: Anatomy, T: dict, sp, phase: str) -> None:
    """The liver: smooth union of two lobes, perturbed by a low-frequency field; textured parenchyma; then
    the portal and hepatic vein trees inside it."""
    lo, hi = anat.liver_box()
    cirrhosis = anat.cirrhosis
    liver_distance = _liver_distance(anat, sp)

    def liver_occ(p):
        d, n = liver_distance(p)
        return ramp(d, n, sp, 0.8)

    if anat.diaphragm_mm > 0:
        # The diaphragm and the muscle of the lateral wall lie on the liver without a fat plane, so the
        # liver's border there is against soft tissue, as in real CT: a muscle shell over the surface whose
        # outward normal faces up, right or back (RAS), fading out towards the front and below.
        t = np.float32(anat.diaphragm_mm)

        def shell_occ(p):
            d, n = liver_distance(p)
            facing = np.clip(0.5 + 1.5 * (0.55 * n[0] - 0.35 * n[1] + 0.75 * n[2]), 0.0, 1.0)
            return ramp(d - t, n, sp, 0.8) * facing.astype(np.float32)

        P.paint(lo - anat.diaphragm_mm, hi + anat.diaphragm_mm, shell_occ, T["muscle"])
    def parenchyma(p):
        hu = T["liver"] + anat.liver_texture(p) * np.float32(anat.texture_sd[phase])
        return hu if cirrhosis is None else hu + cirrhosis.parenchyma(p, phase, sp)

    hit = P.paint(lo, hi, liver_occ, parenchyma)
    if hit is not None:
        P.liver[hit[0]] = np.maximum(P.liver[hit[0]], hit[1])
    for tree, name in ((anat.portal_tree, "portal_vein"), (anat.hepatic_tree, "hepatic_vein")):
        for a, b, ra, rb in tree:
            P.paint(
                *capsule_box(a, b, max(ra, rb) + 4.0), _tube(a, b, ra, rb, sp), T[name], inside_liver=True,
                tag=name,
            )


def _paint_displacing(P: _Painter, anat: Anatomy, T: dict, sp) -> None:
    """Structures that displace the liver (not part of its label): gallbladder, IVC, aorta, portal trunk."""
    c, s = anat.organs["gallbladder"]
    P.paint(*_box(c, s), _ell(c, s, sp), T["fluid"], exclude_liver=True)
    for name, key in (("ivc", "ivc"), ("aorta", "aorta"), ("portal_trunk", "portal_vein")):
        a, b, ra, rb = anat.tubes[name]
        P.paint(*capsule_box(a, b, max(ra, rb) + 4.0), _tube(a, b, ra, rb, sp), T[key], exclude_liver=True,
                tag=key)


def _tube(a, b, ra, rb, sp):
    return lambda p: ramp(*capsule(p, a, b, ra, rb), sp)


def _paint_spine(P: _Painter, anat: Anatomy, T: dict[str, float], sp: np.ndarray) -> None:
    """Vertebral bodies (cortex, cancellous bone) alternating with discs; the canal and the posterior arch."""
    big = 1e4
    body_c = anat.world([0.0, -58.0, 0.0])[:2]
    radius = anat.size([21.0, 19.0, 0.0])[:2]
    box = ([body_c[0] - 40, body_c[1] - 70, -big], [body_c[0] + 40, body_c[1] + 30, big])
    P.paint(
        *box, lambda p: ramp(*elliptic_cylinder(p, body_c, radius), sp), T["bone_cortex"], exclude_liver=True
    )
    period = 32.0 * anat.scale[2]

    def inner_value(p):
        phase_z = np.mod(p[2] - anat.offset[2], period) / period  # disc where phase_z < 0.22
        disc = np.clip((0.22 - phase_z) * period / 3.0 + 0.5, 0.0, 1.0)
        return T["bone_cancellous"] + disc * (T["disc"] - T["bone_cancellous"])

    P.paint(*box, lambda p: ramp(*elliptic_cylinder(p, body_c, radius - 2.5), sp), inner_value)
    arch_c = anat.world([0.0, -92.0, 0.0])[:2]
    P.paint(
        *box,
        lambda p: ramp(*elliptic_cylinder(p, arch_c, anat.size([16.0, 12.0, 0])[:2]), sp),
        T["bone_cortex"] * 0.8,
    )
    canal_c = anat.world([0.0, -84.0, 0.0])[:2]
    P.paint(
        *box, lambda p: ramp(*elliptic_cylinder(p, canal_c, anat.size([8.0, 7.0, 0])[:2]), sp), T["fluid"]
    )
