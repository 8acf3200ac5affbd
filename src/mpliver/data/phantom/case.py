"""One synthetic multi-phase case: kinetics → anatomy → lesions → motion → every phase sampled at its own time
point and grid → acquisition effects → noise → labels."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mpliver.data.phantom.anatomy import AnatomyVariety, render_anatomy, sample_anatomy
from mpliver.data.phantom.artefacts import global_hu, slice_profile_blur, streaks
from mpliver.data.phantom.cirrhosis import apply_cirrhosis, sample_cirrhosis
from mpliver.data.phantom.config import PhantomConfig
from mpliver.data.phantom.enhancement import sample_kinetics
from mpliver.data.phantom.lesions import LESION_TYPES, Lesion, LesionSpread, place_lesions, render_lesion
from mpliver.data.phantom.motion import art_geometry, pv_geometry, sample_motion
from mpliver.data.phantom.noise import blurred_noise
from mpliver.data.phantom.shapes import PointGrid
from mpliver.io.geometry import Geometry

HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass
class SyntheticCase:
    """A generated case. Volumes are (i, j, k) arrays, phases in order (the first is the primary); `label`
    lies on the primary grid, `phase_labels[name]` on each other phase's grid.

    `motions[name]` is the true rigid shift: anatomy at world p in the primary phase appears at p + motion in
    phase `name` (plus a small smooth deformation that is not part of it); `motion_mm` is the second phase's.
    `times` are the scan times (s after injection; None unenhanced), `acquisition` the per-case draws.
    """

    case_id: str
    tumor_type: str
    phases: dict[str, np.ndarray]
    geometries: dict[str, Geometry]
    label: np.ndarray
    phase_labels: dict[str, np.ndarray]
    motions: dict[str, np.ndarray]
    lesions: list[Lesion] = field(default_factory=list)
    noise_sd: dict[str, float] = field(default_factory=dict)
    structures: dict[str, np.ndarray] = field(default_factory=dict)
    times: dict[str, float | None] = field(default_factory=dict)
    acquisition: dict = field(default_factory=dict)
    cirrhosis: dict | None = None  # the cirrhosis draws (cirrhosis.Cirrhosis.describe); None: a healthy liver

    @property
    def num_lesions(self) -> int:
        return len(self.lesions)

    @property
    def primary(self) -> str:
        return next(iter(self.phases))

    @property
    def motion_mm(self) -> np.ndarray:
        """The second phase's rigid shift (zeros for a single-phase case)."""
        return next(iter(self.motions.values()), np.zeros(3))

    @property
    def art_label(self) -> np.ndarray:
        """The second phase's label (the ART label of the default PV + ART cohort)."""
        return next(iter(self.phase_labels.values()))

    def label_of(self, phase: str) -> np.ndarray:
        return self.label if phase == self.primary else self.phase_labels[phase]


def case_id_for(index: int) -> str:
    return f"PHANTOM_{index:04d}"


def _labels(liver: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    label = (liver >= 0.5).astype(np.uint8)
    label[tumour >= 0.5] = 2
    return label


def _case_grid(rng: np.random.Generator, config: PhantomConfig) -> tuple[Geometry, dict]:
    """The primary grid: the config's, or with per-case spacing drawn (same field of view) when randomised."""
    if config.inplane_mm is None and config.slice_mm is None and config.fov_scale == (1.0, 1.0):
        return pv_geometry(config), {}
    fov = np.asarray(config.field_of_view_mm)
    fov[:2] *= rng.uniform(*config.fov_scale)  # a small or large field of view around the same body
    spacing = np.asarray(config.spacing, dtype=np.float64)
    if config.inplane_mm is not None:
        spacing[:2] = rng.uniform(*config.inplane_mm)
    if config.slice_mm is not None:
        spacing[2] = rng.uniform(*config.slice_mm)
    shape = tuple(int(max(8, round(f / s))) for f, s in zip(fov, spacing, strict=True))
    grid = replace(config, shape=shape, spacing=tuple(float(s) for s in spacing))
    return pv_geometry(grid), {"spacing_mm": [round(float(s), 4) for s in spacing],
                               "field_of_view_mm": [round(float(f), 1) for f in fov]}


def generate_case(
    index: int, seed: int, tumor_type: str, config: PhantomConfig | None = None
) -> SyntheticCase:
    """Generate case `index` of the cohort with `seed`; the same (seed, index, type, config) gives the same
    arrays, whatever else is generated and in whichever order (the generator is seeded from (seed, index))."""
    if tumor_type not in LESION_TYPES:
        raise ValueError(f"unknown tumour type '{tumor_type}' (expected one of {', '.join(LESION_TYPES)})")
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
    config = config or PhantomConfig()
    rng = np.random.default_rng([int(seed), int(index)])
    names = config.phases
    primary = names[0]
    kin = sample_kinetics(rng, names, config.timing_variety)
    geom0, acquisition = _case_grid(rng, config)
    variety = AnatomyVariety(config.body_scale, config.fat_mm, config.liver_variety, config.fov_shift,
                             config.diaphragm_mm)
    arterial = {p: kin.arterial(p) for p in names}
    anatomy = sample_anatomy(rng, config.field_of_view_mm, kin.table, arterial, variety)
    cirrhosis = sample_cirrhosis(seed, index, config.cirrhosis_prob, {p: kin.tau(p) for p in names}, arterial)
    if cirrhosis is not None:  # its own stream: every other draw of the case stays the same
        apply_cirrhosis(anatomy, cirrhosis)
    motions = {p: sample_motion(rng, config) for p in names[1:]}
    geoms = {primary: geom0} | {p: art_geometry(rng, config, geom0) for p in names[1:]}

    grid0 = PointGrid.from_geometry(geom0)
    rendered0 = render_anatomy(grid0, anatomy, primary)
    # Lesions lie whole inside every grid: the primary's z range and each other's, moved back by its motion.
    margin = 1.5 + config.deformation_mm
    z_lo, z_hi = _common_z_range(geoms, motions, names)
    scale = config.lesion_scale * float(np.exp(rng.uniform(*np.log(config.lesion_scale_range))))
    no_lesion = config.no_lesion_prob > 0 and rng.random() < config.no_lesion_prob
    spread = LesionSpread.draw(seed, index, tumor_type, config.multifocal_prob, config.subcapsular_share)
    lesions = [] if no_lesion else place_lesions(
        rng, tumor_type, rendered0[1] >= 0.5, geom0, (z_lo + margin, z_hi - margin), kin, scale,
        int(rng.integers(0, config.extra_lesions + 1)) if config.extra_lesions else 0, spread)
    volumes, labels, structures = _render_phases(anatomy, lesions, geoms, motions, names, grid0, rendered0)
    del grid0, rendered0
    phases, noise_sd = _acquire(rng, config, volumes, geoms, anatomy, acquisition)
    return SyntheticCase(
        case_id=case_id_for(index),
        tumor_type=tumor_type,
        phases=phases,
        geometries=geoms,
        label=labels[primary],
        phase_labels={p: labels[p] for p in names[1:]},
        motions={p: np.asarray(motions[p].shift_mm, dtype=np.float64) for p in names[1:]},
        lesions=lesions,
        noise_sd=noise_sd,
        structures=structures,
        times=dict(kin.times),
        cirrhosis=None if cirrhosis is None else cirrhosis.describe(),
        acquisition=acquisition
        | {"circulation": {"arrival_s": round(kin.circulation.arrival_s, 2),
                           "cardiac": round(kin.circulation.cardiac, 3),
                           "dose": round(kin.circulation.dose, 3)}},
    )


def _common_z_range(geoms: dict, motions: dict, names: tuple[str, ...]) -> tuple[float, float]:
    """The z range (mm) that the primary grid and every other grid, moved back by its motion, all cover."""
    geom0 = geoms[names[0]]
    z_lo, z_hi = geom0.origin[2], geom0.origin[2] + (geom0.shape[2] - 1) * geom0.spacing[2]
    for p in names[1:]:
        g, shift = geoms[p], motions[p].shift_mm[2]
        z_lo = max(z_lo, g.origin[2] - shift)
        z_hi = min(z_hi, g.origin[2] + (g.shape[2] - 1) * g.spacing[2] - shift)
    return z_lo, z_hi


def _render_phases(anatomy, lesions: list, geoms: dict, motions: dict, names: tuple[str, ...],
                   grid0: PointGrid, rendered0: tuple) -> tuple[dict, dict, dict]:
    """Noise-free HU, labels and structure maps of every phase: the anatomy (each other phase's grid moved
    by its motion) with the lesions drawn in; the primary's anatomy is `rendered0`, already drawn."""
    volumes, labels, structures = {}, {}, {}
    for p in names:
        if p == names[0]:
            grid, (hu, liver, struct) = grid0, rendered0
        else:
            grid = PointGrid.from_geometry(geoms[p], motions[p].art_to_pv_points)
            hu, liver, struct = render_anatomy(grid, anatomy, p)
        tumour = np.zeros(geoms[p].shape, dtype=np.float32)
        for lesion in lesions:
            render_lesion(grid, lesion, p, hu, tumour, liver)
        struct[tumour > 0] = 0
        volumes[p], labels[p], structures[p] = hu, _labels(liver, tumour), struct
    return volumes, labels, structures


def _acquire(rng: np.random.Generator, config: PhantomConfig, volumes: dict, geoms: dict, anatomy,
             acquisition: dict) -> tuple[dict, dict]:
    """The scanner's part, drawn from `rng`: slice thickness, streaks, HU calibration, noise and clipping,
    per phase -> (phases, noise SD per phase); the draws are recorded in `acquisition`."""
    names = tuple(volumes)
    primary, geom0 = names[0], geoms[names[0]]
    lo, hi = config.noise_sd
    sd = float(rng.uniform(lo, hi))
    noise_sd = {p: sd if p == primary else float(np.clip(sd * rng.uniform(0.9, 1.1), lo, hi)) for p in names}
    sharpness = float(rng.uniform(*config.kernel_sharpness))
    thickness = float(rng.uniform(*config.thickness_ratio))
    thickness = min(thickness, max(1.0, config.max_thickness_mm / float(geom0.spacing[2])))
    streak_hu = (float(rng.uniform(*config.streak_hu))
                 if config.streak_prob > 0 and rng.random() < config.streak_prob else 0.0)
    spine = anatomy.world([0.0, -58.0, 0.0])
    phases, calibration = {}, {}
    for p in names:
        scale_p, offset_p = float(rng.uniform(*config.hu_scale)), float(rng.uniform(*config.hu_offset))
        hu = slice_profile_blur(volumes[p], thickness)
        if streak_hu:
            hu = hu + streaks(rng, geoms[p], spine, streak_hu)
        hu = global_hu(hu, scale_p, offset_p)
        hu += blurred_noise(rng, hu.shape, noise_sd[p], config.noise_blur_vox, sharpness)
        phases[p] = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.float32)
        calibration[p] = [round(scale_p, 4), round(offset_p, 2)]
    if config.hu_scale != (1.0, 1.0) or config.hu_offset != (0.0, 0.0):
        acquisition["hu_scale_offset"] = calibration
    if sharpness:
        acquisition["kernel_sharpness"] = round(sharpness, 3)
    if thickness > 1.0:
        acquisition["slice_thickness_mm"] = round(thickness * float(geom0.spacing[2]), 3)
    if streak_hu:
        acquisition["streak_hu"] = round(streak_hu, 1)
    return phases, noise_sd
