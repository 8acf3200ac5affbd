"""Slice inference and the label map, against hand-built volumes (identity crop, so the expected PV-grid
result is known voxel by voxel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mpliver.data.orientation import SliceOrientation
from mpliver.data.slices import CropBox, SliceMapping
from mpliver.data.slices import masked_stacks as case_stacks
from mpliver.inference.slices import label_map, most_tumor_slice, predict_case


class CentreThreshold(nn.Module):
    """Tumour where the PV centre channel exceeds 0.5: logits (0, 40 * (x - 0.5)); a fixed 'confidence'."""

    def forward(self, phases):
        x = phases[0][:, 1:2]
        logits = torch.cat([torch.zeros_like(x), 40.0 * (x - 0.5)], dim=1)
        return {"logits": logits, "confidence": torch.full_like(x[:, :, ::4, ::4], 0.25)}


def _case(n=8, stored=7, halo=1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (2, stored, n, n)).astype(np.float32)
    mask = np.ones((stored, n, n), np.uint8)
    mask[:, :, : n // 4] = 0                                  # no liver in the first columns
    return images, mask, halo


def test_case_stacks_hold_each_centre_with_its_neighbours_masked():
    images, mask, halo = _case()
    stacks = case_stacks(images, mask, halo)
    assert stacks.shape == (5, 2, 3, 8, 8)
    for s in range(5):
        for c in range(3):
            np.testing.assert_array_equal(stacks[s, :, c], images[:, s + c] * mask[s + c])


def test_predict_case_maps_slices_back_onto_the_pv_grid():
    images, mask, halo = _case()
    n, num_axial = 8, 12
    centres = tuple(range(3, 8))                              # 5 centre slices at axial 3..7
    mapping = SliceMapping(SliceOrientation(2, (0, 1), (False, False)), CropBox((0, 0), (n, n)),
                           (n, n, num_axial), centres, n)
    pred = predict_case(CentreThreshold(), images, mask, halo, mapping, batch_size=2)
    expected = np.zeros((n, n, num_axial), bool)
    for s, k in enumerate(centres):
        expected[:, :, k] = images[0, s + halo] * mask[s + halo] > 0.5
    assert pred.probability.shape == (n, n, num_axial)
    np.testing.assert_array_equal(pred.tumor, expected)
    assert pred.slices.confidence.shape == (5, 2, 2)
    # the batch size does not change the result
    again = predict_case(CentreThreshold(), images, mask, halo, mapping, batch_size=16)
    np.testing.assert_allclose(again.probability, pred.probability)


def test_predict_case_with_a_flipped_orientation_and_an_offset_box():
    images, mask, halo = _case(n=4, stored=3)
    mapping = SliceMapping(SliceOrientation(2, (0, 1), (True, False)), CropBox((2, 1), (4, 4)), (8, 6, 2),
                           (1,), 4)
    pred = predict_case(CentreThreshold(), images, mask, halo, mapping)
    slice_hw = images[0, 1] * mask[1] > 0.5                   # the single centre slice, network frame
    expected = np.zeros((8, 6, 2), bool)
    expected[2:6, 1:5, 1] = slice_hw
    expected = expected[::-1]                                 # H runs against i
    np.testing.assert_array_equal(pred.tumor, expected)


def test_label_map_and_slice_choice():
    tumor = np.array([[1, 1, 0], [0, 0, 1]], bool)
    liver = np.array([[1, 0, 0], [1, 1, 1]], bool)
    np.testing.assert_array_equal(label_map(tumor, liver), [[2, 0, 0], [1, 1, 2]])
    np.testing.assert_array_equal(label_map(tumor, liver, restrict_to_liver=False), [[2, 2, 0], [1, 1, 2]])
    np.testing.assert_array_equal(label_map(tumor), [[2, 2, 0], [0, 0, 2]])
    with pytest.raises(ValueError):
        label_map(tumor, liver[:1])
    labels = np.zeros((4, 3, 3), np.uint8)
    labels[2, :2, :2] = 2
    labels[1, 0, 0] = 2
    assert most_tumor_slice(labels) == 2
    empty = np.zeros((4, 3, 3), np.uint8)
    fallback = np.zeros((4, 3, 3), bool)
    fallback[3, 0, 0] = True
    assert most_tumor_slice(empty, fallback=fallback) == 3
    assert most_tumor_slice(empty) == 2
