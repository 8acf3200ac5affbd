"""The uncertainty formula lives once, in models/urim.py: the torch map and its numpy twin agree."""

from __future__ import annotations

import numpy as np
import torch

from mpliver.models.urim import S_MIN_FLOOR, uncertainty_from_probability, uncertainty_map


def _reference(p: np.ndarray) -> np.ndarray:
    """u = exp(1 - S_max / S_min) in float64 for S = (1 - p, p), S_min floored."""
    s = np.stack([1.0 - p, p]).astype(np.float64)
    return np.exp(1.0 - s.max(axis=0) / np.maximum(s.min(axis=0), S_MIN_FLOOR))


def test_torch_map_and_numpy_twin_agree_on_random_input():
    rng = np.random.default_rng(0)
    logit = rng.normal(scale=4.0, size=(2, 17, 19))
    p = 1.0 / (1.0 + np.exp(-logit))
    logits = torch.from_numpy(np.stack([np.zeros_like(logit), logit], axis=1))  # softmax = (1 - p, p)
    from_torch = uncertainty_map(logits)[:, 0].numpy()
    from_numpy = uncertainty_from_probability(p)
    reference = _reference(p)
    assert from_numpy.dtype == np.float32 and from_numpy.shape == p.shape
    np.testing.assert_allclose(from_numpy, reference, atol=2e-5)
    np.testing.assert_allclose(from_torch, reference, atol=2e-5)
    np.testing.assert_allclose(from_torch, from_numpy, atol=2e-5)
    assert uncertainty_from_probability(np.array([0.5]))[0] == 1.0  # the most uncertain pixel
