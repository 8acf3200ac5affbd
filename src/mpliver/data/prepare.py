"""One case from volumes to network-ready slices (docs/method.md §4.1-4.4), in memory.

The cache (`cache.py`) stores what this returns; inference runs the same function on new studies, so training
and prediction see identical input. Images are stored windowed but not yet multiplied by the liver mask: the
mask is applied per slice when a stack is read (`PreparedCase.stacks`, the Dataset), which keeps the same
cache usable for the liver model's own (unmasked) training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpliver.data.config import PreprocessConfig
from mpliver.data.lesion_contrast import LesionContrast, lesion_components, lesion_contrast
from mpliver.data.liver_mask import LiverMaskSource, check_liver_mask, mask_source_from_config
from mpliver.data.orientation import slice_orientation
from mpliver.data.registration import RigidTransform, register_phase
from mpliver.data.slices import SliceMapping, crop_resize, full_box, liver_box, masked_stacks, window
from mpliver.errors import InputError
from mpliver.io.checks import check_finite
from mpliver.io.labels import TUMOR
from mpliver.io.layout import CaseVolumes


@dataclass
class PreparedCase:
    """Network-ready slices of one case.

    `images` (P, T, n, n) windowed to [0, 1], phases in channel order, on the PV grid; `mask` and `label`
    (T, n, n) uint8. Stored slice t is axial slice `stored_slices[t]`; the centre slices are
    t = halo .. T-halo-1, so the 2.5D stack of centre s (s = 0 .. S-1) is stored slices s .. s + 2*halo
    (edge slices repeated). With a label holding tumour, `lesions` (T, n, n) numbers its connected lesions
    (1..L, 0 elsewhere) and `lesion_contrast` gives each one's CNR per phase (`lesion_contrast.py`).
    """

    case_id: str
    phases: list[str]
    images: np.ndarray
    mask: np.ndarray
    label: np.ndarray | None
    mapping: SliceMapping
    halo: int
    stored_slices: np.ndarray
    transforms: dict[str, RigidTransform] = field(default_factory=dict)
    lesions: np.ndarray | None = None
    lesion_contrast: list[LesionContrast] = field(default_factory=list)

    @property
    def num_slices(self) -> int:
        """Number of centre slices S."""
        return len(self.mapping.centre_slices)

    def stacks(self, masked: bool = True) -> np.ndarray:
        """(S, P, C, n, n) float32 input of every centre slice, each slice times its own liver mask."""
        return masked_stacks(self.images, self.mask, self.halo, masked)

    def centre_label(self) -> np.ndarray | None:
        """(S, n, n) label of the centre slices (0 bg, 1 liver, 2 tumour)."""
        return None if self.label is None else self.label[self.halo:len(self.label) - self.halo]

    def tumor_slices(self) -> np.ndarray:
        """Indices s of the centre slices whose (resized) label contains tumour."""
        lab = self.centre_label()
        if lab is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero((lab == TUMOR).reshape(len(lab), -1).any(axis=1))

    def lesion_slices(self) -> dict[int, list[int]]:
        """Centre slices s in which each numbered lesion shows (after resizing; a tiny lesion may vanish)."""
        if self.lesions is None:
            return {}
        centre = self.lesions[self.halo:len(self.lesions) - self.halo]
        out: dict[int, list[int]] = {}
        for s, plane in enumerate(centre):
            for index in np.unique(plane[plane > 0]).tolist():
                out.setdefault(int(index), []).append(s)
        return out


def prepare_case(case: CaseVolumes, config: PreprocessConfig, mask_source: LiverMaskSource | None = None,
                 paths: dict[str, Path] | None = None) -> PreparedCase:
    """Register, mask, window, crop and resize one case. `paths` (phase name / 'label' / 'label:PHASE' ->
    file) only names files in error messages."""
    paths = paths or {}
    names = list(case.phases)
    if not names:
        raise InputError(f"case {case.case_id}: no phase")
    for name in names:
        check_finite(case.phases[name], paths.get(name))
    pv, pv_geom = case.phases[names[0]], case.geometries[names[0]]  # the primary phase (PV by default)
    source = mask_source or mask_source_from_config(config)
    liver = check_liver_mask(source(case), source.origin(case.case_id))
    if liver.shape != pv.shape:
        raise InputError(f"liver mask shape {liver.shape} differs from the PV phase {pv.shape}",
                         source.origin(case.case_id))

    on_pv, transforms = {names[0]: pv}, {}
    for name in names[1:]:
        geom = case.geometries[name]
        if config.registration == "none" and geom.same_grid(pv_geom):
            on_pv[name], transforms[name] = case.phases[name], RigidTransform()
            continue
        on_pv[name], transforms[name] = register_phase(
            config.registration, pv, pv_geom, case.phases[name], geom, liver_mask=liver, pv_label=case.label,
            moving_label=case.phase_labels.get(name), moving_path=paths.get(name),
            moving_label_path=paths.get(f"label:{name}"), fixed_path=paths.get(names[0]))

    orient = slice_orientation(pv_geom, config.axial_axis)
    mask_s = orient.to_slices(liver)
    num_axial = mask_s.shape[0]
    if config.keep_slices == "liver":
        has_liver = np.flatnonzero(mask_s.reshape(num_axial, -1).any(axis=1))
        centres = np.arange(has_liver[0], has_liver[-1] + 1)
    else:
        centres = np.arange(num_axial)
    halo = config.halo
    stored = np.clip(np.arange(centres[0] - halo, centres[-1] + halo + 1), 0, num_axial - 1)
    spacing = orient.plane_spacing(pv_geom)
    box = liver_box(mask_s, spacing, config.margin_mm) if config.crop else full_box(mask_s.shape[1:], spacing)
    n = config.input_size

    images = np.stack([crop_resize(window(orient.to_slices(on_pv[p])[stored], *config.window), box, n,
                                   "linear") for p in names])
    mask = crop_resize(mask_s[stored].astype(np.uint8), box, n, "nearest")
    label, lesions, contrast = None, None, []
    if case.label is not None:
        label = crop_resize(orient.to_slices(case.label)[stored].astype(np.uint8), box, n, "nearest")
        components, count = lesion_components(case.label)
        if count:
            contrast = lesion_contrast(on_pv, case.label, pv_geom.spacing, components)
            lesions = crop_resize(orient.to_slices(components)[stored], box, n, "nearest")
    mapping = SliceMapping(orient, box, tuple(pv.shape), tuple(int(c) for c in centres), n)
    return PreparedCase(case.case_id, names, images, mask, label, mapping, halo, stored, transforms,
                        lesions, contrast)
