"""Small hand-built two-phase scenes for the pre-processing tests (independent of the phantom generator).

A scene is analytic: body, liver, a tumour, spine and a vessel as ellipsoids in world mm. The ART phase shows
the same anatomy moved by `motion` (anatomy at p in PV appears at p + motion in ART) and may lie on a grid
with another origin, so the true registration is known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpliver.io.geometry import Geometry
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import write_nifti


def _ell(p: np.ndarray, centre, semi) -> np.ndarray:
    return (((p - np.asarray(centre, float)) / np.asarray(semi, float)) ** 2).sum(-1) < 1


def render(geom: Geometry, shift=(0.0, 0.0, 0.0), phase: str = "PV", tumor_centre=(70, 85, 40)):
    """HU volume and label (0/1/2) of the scene seen through `geom`, anatomy moved by `shift` mm."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in geom.shape], indexing="ij"), -1).reshape(-1, 3)
    p = geom.index_to_world(idx).reshape(*geom.shape, 3) - np.asarray(shift, float)
    body = _ell(p, (80, 80, 40), (75, 60, 400))
    liver = _ell(p, (68, 88, 40), (40, 32, 24)) | _ell(p, (100, 95, 36), (18, 16, 14))
    tumor = _ell(p, tumor_centre, (9, 8, 7)) & liver
    spine = _ell(p, (82, 130, 40), (10, 10, 400))
    vessel = _ell(p, (95, 115, 40), (6, 6, 400))
    hu = {"PV": dict(liver=115, tumor=60, vessel=170, fat=-90, body=40),
          "ART": dict(liver=80, tumor=150, vessel=320, fat=-90, body=35)}[phase]
    v = np.full(geom.shape, -1000.0, np.float32)
    v[body] = hu["fat"]
    v[body & (_ell(p, (80, 80, 40), (65, 50, 400)))] = hu["body"]
    v[liver] = hu["liver"]
    v[tumor] = hu["tumor"]
    v[spine] = 500
    v[vessel] = hu["vessel"]
    label = np.zeros(geom.shape, np.uint8)
    label[liver] = 1
    label[tumor] = 2
    return v, label


def make_case(shape=(64, 64, 20), spacing=(2.5, 2.5, 4.0), motion=(0.0, 0.0, 0.0), art_origin=(0.0, 0.0, 0.0),
              noise: float = 8.0, seed: int = 0, tumor_centre=(70, 85, 40)):
    """(pv, art, label, art_label, pv_geom, art_geom) of one scene."""
    rng = np.random.default_rng(seed)
    g_pv = Geometry.from_spacing(shape, spacing)
    g_art = Geometry.from_spacing(shape, spacing, origin=art_origin)
    pv, label = render(g_pv, (0, 0, 0), "PV", tumor_centre)
    art, art_label = render(g_art, motion, "ART", tumor_centre)
    pv += rng.normal(0, noise, shape).astype(np.float32)
    art += rng.normal(0, noise, shape).astype(np.float32)
    return pv, art, label, art_label, g_pv, g_art


def write_scene_dataset(root: Path, num_cases: int = 3, shape=(48, 48, 14), spacing=(3.5, 3.5, 5.0),
                        folds: int = 3) -> Path:
    """A dataset in the case layout with `num_cases` two-phase scenes (motions differ per case)."""
    root = Path(root)
    cases = {}
    for n in range(num_cases):
        case = f"SCENE_{n:03d}"
        motion = (1.0 * n, -1.0, 2.0)
        pv, art, label, art_label, g_pv, g_art = make_case(shape, spacing, motion, (2.0, -3.0, 1.0), seed=n)
        write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", pv, g_pv)
        write_nifti(root / "imagesTr" / f"{case}_0001.nii.gz", art, g_art)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, g_pv)
        write_nifti(root / "labelsTr_phases" / f"{case}_0001.nii.gz", art_label, g_art)
        cases[case] = {"tumor_type": "HCC", "fold": n % folds}
    write_dataset_json(root, ["PV", "ART"], num_cases, cases)
    return root
