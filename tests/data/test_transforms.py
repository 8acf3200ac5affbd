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


def _off(**on):
    from mpliver.data.transforms import IntensityAugmentation

    probs = dict(noise_prob=0.0, blur_prob=0.0, scale_prob=0.0, shift_prob=0.0, gamma_prob=0.0,
                 lowres_prob=0.0)
    return IntensityAugmentation(**(probs | on))


def test_intensity_off_is_identity_and_shift_is_per_phase():
    from mpliver.data.transforms import RandomIntensity

    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    assert torch.equal(RandomIntensity(_off())(x, np.random.default_rng(0)), x)
    out = RandomIntensity(_off(shift_prob=1.0, shift=0.1))(x, np.random.default_rng(1))
    d = out - x
    for p in range(2):  # one constant offset per phase, shared by its 3 slices, within +-0.1
        assert torch.allclose(d[p], d[p].flatten()[0].expand_as(d[p]), atol=1e-6)
        assert abs(float(d[p].flatten()[0])) <= 0.1 + 1e-6
    assert not torch.isclose(d[0, 0, 0, 0], d[1, 0, 0, 0])  # independent draws per phase


def test_intensity_noise_gamma_and_lowres_against_independent_measures():
    from mpliver.data.transforms import RandomIntensity

    x = torch.full((2, 3, 64, 64), 0.5)
    noisy = RandomIntensity(_off(noise_prob=1.0, noise_std=0.04))(x, np.random.default_rng(2))
    for p in range(2):
        assert 0.0 < float((noisy[p] - x[p]).std()) <= 0.045  # SD drawn in (0, 0.04]
    ramp = torch.linspace(0, 1, 64).expand(2, 3, 64, 64).contiguous()
    gamma = RandomIntensity(_off(gamma_prob=1.0, gamma=(1.5, 1.5)))(ramp, np.random.default_rng(3))
    mid = float(gamma[0, 0, 0, 32])
    # retain_stats: gamma 1.5 on [0, 1] then the original mean and SD restored (computed here by hand)
    g = ramp[0, 0, 0] ** 1.5
    expected = (g - g.mean()) / g.std() * ramp[0, 0, 0].std() + ramp[0, 0, 0].mean()
    assert mid == pytest.approx(float(expected[32].clamp(0, 1)), abs=0.02)
    checker = torch.zeros(1, 1, 64, 64)
    checker[..., ::2, :] = 1.0
    low = RandomIntensity(_off(lowres_prob=1.0, zoom=(0.5, 0.5)))(checker, np.random.default_rng(4))
    assert float(low.std()) < 0.5 * float(checker.std())  # the finest stripes cannot survive half resolution
    assert torch.all((low >= 0) & (low <= 1))
