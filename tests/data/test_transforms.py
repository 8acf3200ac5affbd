"""Augmentation: one affine for all phases and the label, checked against hand geometry and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mpliver.data.transforms import AffineAugmentation, AffineParams, RandomAffine, affine_theta, warp


def _marker_sample(n=48, at=(14, 30)):
    phases = torch.zeros(2, 3, n, n)
    phases += torch.rand(2, 3, n, n) * 0.2          # background texture, different per phase
    phases[:, :, at[0] - 1:at[0] + 2, at[1] - 1:at[1] + 2] = 1.0
    label = torch.zeros(n, n, dtype=torch.long)
    label[at[0] - 1:at[0] + 2, at[1] - 1:at[1] + 2] = 1
    return {"phases": phases, "label": label}


def _centroid(img: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(img))


@pytest.mark.parametrize("seed", range(6))
def test_marker_moves_together_in_all_phases_and_the_label(seed):
    aug = RandomAffine(AffineAugmentation(max_shift=0.15, max_rotation_deg=30, scale_range=(0.8, 1.25)))
    sample = _marker_sample()
    out = aug(sample, np.random.default_rng(seed))
    lab = out["label"].numpy()
    assert out["label"].dtype == torch.long and set(np.unique(lab)) <= {0, 1}
    assert lab.sum() > 0
    ref = _centroid(lab.astype(float))
    for p in range(2):
        for c in range(3):
            img = out["phases"][p, c].numpy()
            marker = np.where(img > 0.6, img, 0.0)
            assert np.linalg.norm(_centroid(marker) - ref) < 0.75


def test_identity_parameters_leave_the_sample_unchanged():
    x = torch.rand(4, 16, 16)
    np.testing.assert_allclose(warp(x, affine_theta(AffineParams(), (16, 16))).numpy(), x.numpy(), atol=1e-6)


def test_rotation_shift_zoom_match_scipy():
    """Output pixel p reads input pixel c + R^-1 (p - c - shift) / scale (SciPy's affine_transform form)."""
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.normal(size=(40, 40)), 2.0)
    params = AffineParams(rotation_deg=20.0, scale=1.2, shift=(3.0, -2.0))
    out = warp(torch.from_numpy(img[None]).float(), affine_theta(params, (40, 40)))[0].numpy()
    a = np.radians(20.0)
    # in (row=y, col=x) order the x-y rotation [[cos, -sin], [sin, cos]] becomes [[cos, sin], [-sin, cos]]
    rot_rc = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    inv = np.linalg.inv(rot_rc) / 1.2
    c = np.array([19.5, 19.5])
    offset = c - inv @ (c + np.array([3.0, -2.0]))
    ref = ndimage.affine_transform(img, inv, offset=offset, order=1, mode="constant", cval=0.0)
    inner = (slice(6, 34), slice(6, 34))
    np.testing.assert_allclose(out[inner], ref[inner], atol=1e-4)


def test_ninety_degree_rotation_by_hand():
    img = torch.zeros(1, 9, 9)
    img[0, 1, 4] = 1.0  # above the centre (4, 4)
    out = warp(img, affine_theta(AffineParams(rotation_deg=90.0), (9, 9)), mode="nearest")[0]
    # counter-clockwise by 90 degrees in (x=col, y=row): (dx, dy) = (0, -3) -> (3, 0): row 4, col 7
    assert out[4, 7] == 1.0 and out.sum() == 1.0


def test_same_seed_same_augmentation():
    aug = RandomAffine()
    s = _marker_sample()
    a = aug(s, np.random.default_rng(5))
    b = aug(s, np.random.default_rng(5))
    assert torch.equal(a["phases"], b["phases"]) and torch.equal(a["label"], b["label"])
