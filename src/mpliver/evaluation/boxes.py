"""Tight boxes around the foreground of a mask, split at empty slabs, so that metrics never touch the
background far from the masks.

A single bounding box is not enough: two scattered false positives in opposite corners make it the whole
image, and erosion, labelling and distance computations then cost seconds on a 512x512x100 volume. Here a box
is split wherever a whole slab (a plane perpendicular to one axis) of it is empty, recursively. Every
connected component (6- or 26-connected) lies inside exactly one box, because a component cannot cross an
empty slab; so each box can be processed alone, padded with one background voxel on every side.
"""

from __future__ import annotations

import numpy as np

Box = tuple[slice, ...]


def _runs(idx: np.ndarray, start: int) -> list[tuple[int, int]]:
    """Runs of consecutive integers in sorted `idx`, as half-open (begin, end) shifted by `start`."""
    breaks = np.flatnonzero(np.diff(idx) > 1)
    begins = np.concatenate(([idx[0]], idx[breaks + 1])) + start
    ends = np.concatenate((idx[breaks], [idx[-1]])) + start + 1
    return [(int(b), int(e)) for b, e in zip(begins, ends, strict=True)]


def foreground_boxes(mask: np.ndarray) -> list[Box]:
    """Disjoint tight boxes that together hold every foreground voxel, split at empty slabs; [] if empty."""
    mask = np.asarray(mask, dtype=bool)
    ndim = mask.ndim
    leaves: list[Box] = []
    stack: list[Box] = [tuple(slice(0, s) for s in mask.shape)]
    while stack:
        box = stack.pop()
        sub = mask[box]
        runs = []
        for axis in range(ndim):
            idx = np.flatnonzero(np.any(sub, axis=tuple(a for a in range(ndim) if a != axis)))
            if idx.size == 0:  # only possible for an empty mask at the root
                return []
            runs.append(_runs(idx, box[axis].start))
        tight = [slice(r[0][0], r[-1][1]) for r in runs]
        axis = max(range(ndim), key=lambda a: len(runs[a]))
        if len(runs[axis]) == 1:
            leaves.append(tuple(tight))
            continue
        for begin, end in runs[axis]:
            child = list(tight)
            child[axis] = slice(begin, end)
            stack.append(tuple(child))
    return sorted(leaves, key=lambda b: tuple(s.start for s in b))


def padded_crop(mask: np.ndarray, box: Box, pad: int = 1) -> np.ndarray:
    """`mask[box]` with `pad` background voxels added on every side."""
    return np.pad(np.asarray(mask[box], dtype=bool), pad)
