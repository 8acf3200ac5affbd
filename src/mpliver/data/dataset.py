"""A torch Dataset over cached slices, and fold selection from dataset.json.

Item: {'phases': (P, C, H, W) float32, 'label': (H, W) int64, 'case': str, 'slice': int (centre index within
the cached case), 'axial': int (the axial slice of the PV volume)}. For task 'tumor' the label is tumour (1)
vs background (0) and each slice of a stack is multiplied by its own liver mask; for task 'liver' (the liver
model) 'phases' holds one phase (1, C, H, W), unmasked, and the label is liver incl. tumour (1) vs background:
the primary phase, or with `liver_phase='any'` in training a phase drawn per slice (the primary where the
drawn phase's field does not cover the liver).
With `faint_lesion_cnr` > 0 (task 'tumor'), a lesion whose CNR stays below it in every phase the model reads
is IGNORE_INDEX in the label: out of the loss, neither tumour nor liver (`lesion_contrast.py` says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset as TorchDataset

from mpliver.data.cache import CachedCase
from mpliver.data.config import LIVER_PHASES
from mpliver.data.lesion_contrast import LesionContrast
from mpliver.data.sampling import EpochSampler
from mpliver.data.transforms import AffineAugmentation, IntensityAugmentation, RandomAffine, RandomIntensity
from mpliver.errors import DatasetError, InputError
from mpliver.io.labels import IGNORE_INDEX, LIVER, TUMOR
from mpliver.io.layout import Dataset

TASKS = ("tumor", "liver")


def split_cases(dataset: Dataset, test_fold: int,
                val_fold: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) case lists from the folds in dataset.json; val is empty when `val_fold` is None."""
    folds = dataset.folds()
    for f in (test_fold, val_fold):
        if f is not None and f not in folds:
            raise DatasetError(f"fold {f} does not exist (folds: {sorted(folds)})",
                               dataset.root / "dataset.json")
    if val_fold is not None and val_fold == test_fold:
        raise DatasetError(f"validation fold equals test fold ({test_fold})", dataset.root / "dataset.json")
    test = sorted(folds[test_fold])
    val = sorted(folds[val_fold]) if val_fold is not None else []
    train = sorted(c for f, cs in folds.items() if f not in (test_fold, val_fold) for c in cs)
    return train, val, test


class SliceDataset(TorchDataset):
    """Centre slices of cached cases. Index with an int, or with (int, seed) to augment (see EpochSampler)."""

    def __init__(self, cache: str | Path, cases: list[str], task: str = "tumor",
                 augmentation: AffineAugmentation | None = None, mask_jitter: int = 0,
                 intensity: IntensityAugmentation | None = None, faint_lesion_cnr: float = 0.0,
                 input_phases: int | None = None, liver_phase: str = "primary"):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got '{task}'")
        if mask_jitter < 0:
            raise ValueError(f"mask_jitter must be >= 0, got {mask_jitter}")
        if faint_lesion_cnr < 0:
            raise ValueError(f"faint_lesion_cnr must be >= 0, got {faint_lesion_cnr}")
        if liver_phase not in LIVER_PHASES:
            raise ValueError(f"liver_phase must be one of {LIVER_PHASES}, got '{liver_phase}'")
        self.liver_phase = liver_phase
        self.cache, self.task = Path(cache), task
        self.mask_jitter = int(mask_jitter)
        self.transform = RandomAffine(augmentation) if augmentation is not None else None
        self.intensity = RandomIntensity(intensity) if intensity is not None else None
        self.case_ids = list(cases)
        self.metas = []
        for case in self.case_ids:
            root = self.cache / "cases" / case
            if not (root / "meta.json").exists():
                raise InputError(f"case {case} is not in the cache (run `mpliver preprocess`)", self.cache)
            self.metas.append(CachedCase.open(root))
        # per case, the lesions left out of the loss; slices whose only tumour is such a lesion do not count
        # as tumour slices for the sampler
        self.faint: list[np.ndarray] = []
        items, tumor = [], []
        for ci, cc in enumerate(self.metas):
            tumor_set = set(cc.tumor_slices)
            if task == "tumor" and faint_lesion_cnr > 0:
                faint, tumor_set = faint_lesions(cc, faint_lesion_cnr, input_phases)
                self.faint.append(faint)
            else:
                self.faint.append(np.zeros(0, dtype=np.int64))
            for s in range(cc.num_slices):
                if s in tumor_set:
                    tumor.append(len(items))
                items.append((ci, s))
        self.items = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        self.tumor_items = np.asarray(tumor, dtype=np.int64)
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = {}

    @property
    def num_faint(self) -> int:
        """Lesions left out of the loss over all cases."""
        return int(sum(len(f) for f in self.faint))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in each worker
        return state

    def __len__(self) -> int:
        return len(self.items)

    def other_items(self) -> np.ndarray:
        """Indices of slices without tumour."""
        return np.setdiff1d(np.arange(len(self.items)), self.tumor_items)

    def sampler(self, num_samples: int | None = None, tumor_share: float | None = 0.5,
                seed: int = 0) -> EpochSampler:
        """An EpochSampler over this dataset (num_samples None = number of tumour slices)."""
        return EpochSampler(self.tumor_items, self.other_items(), num_samples, tumor_share, seed)

    def _case_arrays(self, ci: int):
        if ci not in self._arrays:
            cc = self.metas[ci]
            lesions = cc.lesions if len(self.faint[ci]) else None  # only read where lesions are left out
            self._arrays[ci] = (cc.images, cc.mask, cc.label, lesions)
        return self._arrays[ci]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (key, None) if np.isscalar(key) else (int(key[0]), int(key[1]))
        ci, s = (int(v) for v in self.items[index])
        cc = self.metas[ci]
        images, mask, label, lesions = self._case_arrays(ci)
        h = cc.halo
        if label is None:
            raise InputError(f"case {self.case_ids[ci]} has no label in the cache", cc.root)
        centre = np.asarray(label[s + h])
        if self.task == "liver":  # one phase: the primary, or in training with "any" one drawn per slice
            p = 0
            if self.liver_phase == "any" and seed is not None:
                p = int(np.random.default_rng([seed, 3]).integers(images.shape[0]))
            x = np.asarray(images[p:p + 1, s:s + 2 * h + 1], dtype=np.float32)  # (1, C, H, W)
            if p and not covers_liver(x[0], np.asarray(label[s:s + 2 * h + 1]) >= LIVER):
                x = np.asarray(images[:1, s:s + 2 * h + 1], dtype=np.float32)
        else:
            x = np.asarray(images[:, s:s + 2 * h + 1], dtype=np.float32)        # (P, C, H, W)
        if self.intensity is not None and seed is not None:  # before masking: the mask stays exact zeros
            x = self.intensity(torch.from_numpy(x), np.random.default_rng([seed, 2])).numpy()
        if self.task == "tumor":
            m = np.asarray(mask[s:s + 2 * h + 1])
            if self.mask_jitter and seed is not None:
                m = jitter_mask(m, np.random.default_rng([seed, 1]), self.mask_jitter)
            x = x * m.astype(np.float32)[None]
            y = (centre == TUMOR).astype(np.int64)
            if lesions is not None:
                y[np.isin(np.asarray(lesions[s + h]), self.faint[ci])] = IGNORE_INDEX
        else:
            y = (centre >= LIVER).astype(np.int64)
        sample = {"phases": torch.from_numpy(np.ascontiguousarray(x)), "label": torch.from_numpy(y)}
        if self.transform is not None and seed is not None:
            sample = self.transform(sample, np.random.default_rng(seed))
        sample.update(case=self.case_ids[ci], slice=s, axial=int(cc.meta["mapping"]["centre_slices"][s]))
        return sample


UNCOVERED = 0.01  # windowed value at or below which a liver pixel counts as outside the phase's field


def covers_liver(stack: np.ndarray, liver: np.ndarray, tolerance: float = 0.01) -> bool:
    """Whether a registered phase's windowed slices (C, H, W) show the liver where each slice's label
    (C, H, W) puts it: a phase whose grid did not reach this part of the PV grid is filled with air there
    (registration's FILL_HU, 0 after windowing), and liver tissue never windows to 0 in any phase. True when
    at most `tolerance` of the liver pixels of the stack are at that floor."""
    if not liver.any():
        return True
    return float(np.mean(stack[liver] <= UNCOVERED)) <= tolerance


def faint_lesions(case: CachedCase, threshold: float, input_phases: int | None = None
                  ) -> tuple[np.ndarray, set[int]]:
    """(indices of the case's lesions whose |CNR| is below `threshold` in each of the first `input_phases`
    phases, the centre slices that still hold a lesion above it). A cache without the lesion table (written
    before mpliver kept it) is refused: pre-process again."""
    phases = list(case.meta["phases"])[:input_phases]
    if case.tumor_slices and "lesions" not in case.meta:
        raise InputError("this cache has no per-lesion contrast (built by an older mpliver): pre-process "
                         "again to use data.faint_lesion_cnr", case.root)
    faint, visible_slices = [], set()
    for row in case.lesion_table:
        if LesionContrast.from_dict(row).visible(phases, threshold):
            visible_slices.update(int(s) for s in row["slices"])
        else:
            faint.append(int(row["index"]))
    return np.asarray(sorted(faint), dtype=np.int64), visible_slices & set(case.tumor_slices)


def jitter_mask(mask: np.ndarray, rng: np.random.Generator, max_px: int) -> np.ndarray:
    """The (C, H, W) liver-mask stack dilated (k > 0) or eroded (k < 0) in plane by k pixels, k drawn
    uniformly from [-max_px, max_px]: training then sees the liver masks of a stage-1 liver model, which
    are off by a pixel or two at the boundary, instead of only the reference mask."""
    k = int(rng.integers(-max_px, max_px + 1))
    if k == 0:
        return mask
    cross = ndimage.generate_binary_structure(2, 1)[None]  # in plane only: (1, 3, 3)
    op = ndimage.binary_dilation if k > 0 else ndimage.binary_erosion
    return op(np.asarray(mask, bool), structure=cross, iterations=abs(k))
