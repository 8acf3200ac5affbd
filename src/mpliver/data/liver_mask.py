"""Liver masks on the PV grid from three sources that plug in the same way (docs/method.md §4.3).

A source is any callable `source(case) -> bool mask on the PV grid` with an `origin(case_id)` that names what
the mask came from (for error messages and the cache manifest). `FromLabel` reads the reference label
(training), `FromFile` a user-supplied mask (e.g. TotalSegmentator output), `FromModel` runs a trained liver
network slice by slice. The data layer does not import the models: `FromModel` takes any `torch.nn.Module`
that maps (N, C, H, W) slices to (N, 2, H, W) logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from scipy import ndimage

from mpliver.data.orientation import slice_orientation
from mpliver.data.slices import context_indices, crop_resize, full_box, uncrop, window
from mpliver.errors import InputError
from mpliver.io.checks import check_same_grid
from mpliver.io.geometry import Geometry
from mpliver.io.labels import LIVER
from mpliver.io.layout import CaseVolumes
from mpliver.io.nifti import read_nifti
from mpliver.io.resample import labels_to_grid


@runtime_checkable
class LiverMaskSource(Protocol):
    """Produces the PV-grid liver mask of a case."""

    def __call__(self, case: CaseVolumes) -> np.ndarray: ...

    def origin(self, case_id: str) -> str: ...


def check_liver_mask(mask: np.ndarray, origin: str | Path | None) -> np.ndarray:
    """Refuse an empty liver mask (it would blank the whole input); return it as bool."""
    mask = np.asarray(mask).astype(bool, copy=False)
    if not mask.any():
        raise InputError("the liver mask is empty (no liver voxel): cannot crop or mask the input", origin)
    return mask


def liver_mask_to_grid(mask: np.ndarray, geom: Geometry, pv_geom: Geometry,
                       origin: str | Path | None) -> np.ndarray:
    """A liver mask on grid `geom` placed on the PV grid (exactly where the voxels coincide, else nearest
    neighbour), as bool; refused when it lands outside the PV phase or is empty. The one placement of a
    user-supplied liver mask, for pre-processing and `predict` alike."""
    mask = np.asarray(mask).astype(np.uint8)
    on_pv = labels_to_grid(mask, geom, pv_geom)
    if not on_pv.any() and mask.any():
        raise InputError("the liver mask does not overlap the PV phase (different study or broken header)",
                         origin)
    return check_liver_mask(on_pv, origin)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a 3-D mask."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


class FromLabel:
    """The liver from the reference label: every voxel labelled liver (1) or tumour (2)."""

    def __init__(self, label_path: Mapping[str, str | Path] | None = None):
        self._paths = dict(label_path or {})

    def origin(self, case_id: str) -> str:
        return str(self._paths.get(case_id, f"label of case {case_id}"))

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        if case.label is None:
            raise InputError("liver mask source 'label' needs the case label (labelsTr/)",
                             self.origin(case.case_id))
        return check_liver_mask(case.label >= LIVER, self.origin(case.case_id))


class FromFile:
    """A user-supplied mask file per case: a pattern with `{case}` or a dict case -> path.

    `values` selects which label values mean liver (e.g. (5,) for TotalSegmentator's total task); None means
    any non-zero voxel. A mask on another grid is resampled (nearest) onto the PV grid through the geometry.
    """

    def __init__(self, paths: str | Path | Mapping[str, str | Path], values: tuple[int, ...] | None = None):
        self.paths = paths
        self.values = values

    def path(self, case_id: str) -> Path:
        if isinstance(self.paths, Mapping):
            if case_id not in self.paths:
                raise InputError(f"no liver mask file given for case {case_id}")
            return Path(self.paths[case_id])
        return Path(str(self.paths).replace("{case}", case_id))

    def origin(self, case_id: str) -> str:
        return str(self.path(case_id))

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        path = self.path(case.case_id)
        arr, geom = read_nifti(path)
        mask = np.isin(arr, self.values) if self.values is not None else arr != 0
        pv_geom = case.pv_geometry
        if pv_geom.shape == geom.shape and not pv_geom.same_grid(geom):
            check_same_grid(pv_geom, geom, path, what="liver mask")  # shifted/rotated: almost surely wrong
        return liver_mask_to_grid(mask, geom, pv_geom, path)


class FromModel:
    """A trained liver network run slice by slice on the PV phase, keeping the largest connected component.

    The network sees whole PV slices windowed to `window`, as 2.5D stacks of `context_slices`, padded to a
    square in mm and resized to `input_size` (the same slice pre-processing as `crop=False`), not masked.
    `sequence_input`: call the module with a one-element list of tensors (mpliver's SegmentationModel takes
    one tensor per phase) instead of the tensor; None detects it (a module with `check_inputs`). Outputs may
    be the logits or a dict holding them under 'logits'.
    """

    def __init__(self, module: torch.nn.Module, input_size: int = 256,
                 window: tuple[float, float] = (-70.0, 180.0), context_slices: int = 3,
                 axial_axis: int | None = None, batch_size: int = 8,
                 device: str | torch.device = "cpu", name: str = "liver model",
                 sequence_input: bool | None = None):
        self.module = module
        self.input_size = int(input_size)
        self.window = window
        self.context_slices = int(context_slices)
        self.axial_axis = axial_axis
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.name = name
        self.sequence_input = hasattr(module, "check_inputs") if sequence_input is None else sequence_input

    def origin(self, case_id: str) -> str:
        return f"{self.name} on case {case_id}"

    @torch.no_grad()
    def probability(self, volume: np.ndarray, geom: Geometry, min_field_mm: float = 0.0) -> np.ndarray:
        """The network's liver probability on `volume`'s grid; `min_field_mm` pads each slice to at least
        that field of view before resizing (0: the slice's own)."""
        orient = slice_orientation(geom, self.axial_axis)
        slices = window(orient.to_slices(volume), *self.window)        # (K, H, W)
        box = full_box(slices.shape[1:], orient.plane_spacing(geom), min_field_mm)
        resized = crop_resize(slices, box, self.input_size, "linear")  # (K, n, n)
        k = len(resized)
        idx = context_indices(np.arange(k), k, self.context_slices // 2)
        was_training = self.module.training
        self.module.eval()
        probs = np.empty((k, self.input_size, self.input_size), np.float32)
        try:
            for s in range(0, k, self.batch_size):
                batch = torch.from_numpy(resized[idx[s:s + self.batch_size]]).to(self.device)
                batch = batch.contiguous(memory_format=torch.channels_last)  # as fast or faster, any model
                logits = self.module([batch] if self.sequence_input else batch)
                if isinstance(logits, Mapping):  # models that return a dict of outputs
                    logits = logits.get("logits", next(iter(logits.values())))
                probs[s:s + len(batch)] = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
        finally:
            self.module.train(was_training)
        return orient.from_slices(uncrop(probs, box, slices.shape[1:], "linear", fill=0.0))

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        pv = next(iter(case.phases.values()))
        mask = self.probability(pv, case.pv_geometry) > 0.5
        return check_liver_mask(largest_component(mask) if mask.any() else mask, self.origin(case.case_id))


def mask_source_from_config(config, dataset=None, module: torch.nn.Module | None = None) -> LiverMaskSource:
    """Build the source that a PreprocessConfig names ('model' needs the trained `module`)."""
    if config.liver_mask_source == "label":
        paths = {c: dataset.label_path(c) for c in dataset.cases("Tr")} if dataset is not None else None
        return FromLabel(paths)
    if config.liver_mask_source == "file":
        return FromFile(str(Path(str(config.liver_mask_pattern)).absolute()), config.liver_mask_values)
    if module is None:
        raise InputError("liver_mask_source 'model' needs a trained liver model (pass it to the library)")
    return FromModel(module, config.input_size, config.window, config.context_slices, config.axial_axis)
