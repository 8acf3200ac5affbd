"""One synthetic two-phase case: anatomy → lesions → motion → both phases sampled → noise → labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpliver.data.phantom.anatomy import render_anatomy, sample_anatomy
from mpliver.data.phantom.config import PhantomConfig
from mpliver.data.phantom.enhancement import sample_hu_table
from mpliver.data.phantom.lesions import LESION_TYPES, Lesion, place_lesions, render_lesion
from mpliver.data.phantom.motion import art_geometry, pv_geometry, sample_motion
from mpliver.data.phantom.noise import blurred_noise
from mpliver.data.phantom.shapes import PointGrid
from mpliver.io.geometry import Geometry

HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass
class SyntheticCase:
    """A generated case. Volumes are (i, j, k) arrays; `label` lies on the PV grid, `art_label` on ART's.

    `motion_mm` is the true rigid shift: anatomy at world p in PV appears at p + motion_mm in ART (plus a
    small smooth deformation that is not part of it).
    """

    case_id: str
    tumor_type: str
    phases: dict[str, np.ndarray]
    geometries: dict[str, Geometry]
    label: np.ndarray
    art_label: np.ndarray
    motion_mm: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    noise_sd: dict[str, float] = field(default_factory=dict)

    @property
    def num_lesions(self) -> int:
        return len(self.lesions)


def case_id_for(index: int) -> str:
    return f"PHANTOM_{index:04d}"


def _labels(liver: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    label = (liver >= 0.5).astype(np.uint8)
    label[tumour >= 0.5] = 2
    return label


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
    table = sample_hu_table(rng)
    pv_geom = pv_geometry(config)
    anatomy = sample_anatomy(rng, config.field_of_view_mm, table)
    motion = sample_motion(rng, config)
    art_geom = art_geometry(rng, config, pv_geom)

    pv_grid = PointGrid.from_geometry(pv_geom)
    hu_pv, liver_pv = render_anatomy(pv_grid, anatomy, "PV")
    # Lesions lie whole inside both grids: PV's z range and ART's, moved back by the motion.
    margin = 1.5 + config.deformation_mm
    z_pv = (pv_geom.origin[2], pv_geom.origin[2] + (pv_geom.shape[2] - 1) * pv_geom.spacing[2])
    z_art = (art_geom.origin[2], art_geom.origin[2] + (art_geom.shape[2] - 1) * art_geom.spacing[2])
    z_range = (
        max(z_pv[0], z_art[0] - motion.shift_mm[2]) + margin,
        min(z_pv[1], z_art[1] - motion.shift_mm[2]) - margin,
    )
    lesions = place_lesions(rng, tumor_type, liver_pv >= 0.5, pv_geom, z_range, table, config.lesion_scale)
    tumour_pv = np.zeros(pv_geom.shape, dtype=np.float32)
    for lesion in lesions:
        render_lesion(pv_grid, lesion, "PV", hu_pv, tumour_pv)

    art_grid = PointGrid.from_geometry(art_geom, motion.art_to_pv_points)
    hu_art, liver_art = render_anatomy(art_grid, anatomy, "ART")
    tumour_art = np.zeros(art_geom.shape, dtype=np.float32)
    for lesion in lesions:
        render_lesion(art_grid, lesion, "ART", hu_art, tumour_art)
    del pv_grid, art_grid

    lo, hi = config.noise_sd
    sd = float(rng.uniform(lo, hi))
    noise_sd = {"PV": sd, "ART": float(np.clip(sd * rng.uniform(0.9, 1.1), lo, hi))}
    phases = {}
    for name, hu in (("PV", hu_pv), ("ART", hu_art)):
        hu += blurred_noise(rng, hu.shape, noise_sd[name], config.noise_blur_vox)
        phases[name] = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.float32)
    return SyntheticCase(
        case_id=case_id_for(index),
        tumor_type=tumor_type,
        phases=phases,
        geometries={"PV": pv_geom, "ART": art_geom},
        label=_labels(liver_pv, tumour_pv),
        art_label=_labels(liver_art, tumour_art),
        motion_mm=np.asarray(motion.shift_mm, dtype=np.float64),
        lesions=lesions,
        noise_sd=noise_sd,
    )
