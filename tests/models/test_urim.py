"""URIM: eq. 3 and eq. 4 against float64 re-computations (naive per-pixel loops) with the module's weights."""

from __future__ import annotations

import math

import pytest
import torch

from mpliver.models import URIM, LCConv, confidence_map, uncertainty_map
from mpliver.models.urim import DENOM_FLOOR


def _naive_confidence(logits: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(logits.shape[0], 1, *logits.shape[2:], dtype=torch.float64)
    for n in range(logits.shape[0]):
        for i in range(logits.shape[2]):
            for j in range(logits.shape[3]):
                z = [float(v) for v in logits[n, :, i, j]]
                e = [math.exp(v - max(z)) for v in z]
                s = [v / sum(e) for v in e]
                out[n, 0, i, j] = 1.0 - math.exp(1.0 - max(s) / max(min(s), 1e-6))
    return out


@pytest.mark.parametrize("classes", [2, 3])
def test_confidence_map_matches_eq3(classes):
    torch.manual_seed(0)
    logits = torch.randn(2, classes, 5, 6) * 2
    logits.requires_grad_(True)
    m = confidence_map(logits)
    assert m.shape == (2, 1, 5, 6) and m.dtype == torch.float32 and not m.requires_grad
    torch.testing.assert_close(m.double(), _naive_confidence(logits.detach()), atol=1e-6, rtol=1e-5)
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_confidence_map_extremes():
    logits = torch.tensor([[0.0, 0.0], [200.0, -200.0], [-300.0, 300.0]]).T.reshape(1, 2, 1, 3)
    m = confidence_map(logits)
    assert torch.isfinite(m).all()
    assert m[0, 0, 0, 0] == 0.0  # S_max = S_min: no confidence
    assert m[0, 0, 0, 1] == 1.0 and m[0, 0, 0, 2] == 1.0  # S_min clamped: M rounds to 1
    # half-precision logits (autocast outputs) are promoted to float32
    assert confidence_map(logits.bfloat16()).dtype == torch.float32


def _naive_lcconv(layer: LCConv, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 pixel by pixel in float64; pixels outside the image do not exist (contribute nothing)."""
    w = layer.conv.weight.detach().double()
    b = layer.bias.detach().double()
    x, m = x.double(), m.double()
    n_, c_, h_, w_ = x.shape
    o_, k = w.shape[0], w.shape[-1]
    r = k // 2
    y = torch.zeros(n_, o_, h_, w_, dtype=torch.float64)
    m_next = torch.zeros(n_, 1, h_, w_, dtype=torch.float64)
    for n in range(n_):
        for i in range(h_):
            for j in range(w_):
                window = [(a, bb) for a in range(i - r, i + r + 1) for bb in range(j - r, j + r + 1)
                          if 0 <= a < h_ and 0 <= bb < w_]
                denom = max(sum(float(m[n, 0, a, bb]) for a, bb in window), DENOM_FLOOR)
                for o in range(o_):
                    acc = 0.0
                    for a, bb in window:
                        tap = float((w[o, :, a - i + r, bb - j + r] * x[n, :, a, bb]).sum())
                        acc += tap * float(m[n, 0, a, bb])
                    v = acc / denom + float(b[o])
                    y[n, o, i, j] = max(v, 0.0) if layer.relu else v
                window3 = [(a, bb) for a in range(i - 1, i + 2) for bb in range(j - 1, j + 2)
                           if 0 <= a < h_ and 0 <= bb < w_]
                m_next[n, 0, i, j] = max(float(m[n, 0, a, bb]) for a, bb in window3)
    return y, m_next


@pytest.mark.parametrize("relu", [True, False])
def test_lcconv_matches_eq4_with_borders(relu):
    torch.manual_seed(1)
    layer = LCConv(3, 4, relu=relu)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 5, 6)
    m = torch.rand(2, 1, 5, 6)
    m[0, :, :2, :2] = 0.0  # a corner with no confident pixel in its window: denominator clamped
    m[1, :, :, -1] = 0.0  # a border column of zeros
    y_ref, m_ref = _naive_lcconv(layer, x, m)
    y64, m64 = layer.double()(x.double(), m.double())
    torch.testing.assert_close(y64, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(m64, m_ref)
    y32, _ = layer.float()(x, m)
    torch.testing.assert_close(y32.double(), y_ref, atol=1e-4, rtol=1e-4)
    # the all-zero corner window gives exactly the bias (after ReLU if any)
    expected = layer.bias.detach().clamp_min(0) if relu else layer.bias.detach()
    torch.testing.assert_close(y32[0, :, 0, 0], expected)


def test_lcconv_gradient_flows_to_weights_not_to_m():
    layer = LCConv(2)
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    m = torch.rand(1, 1, 4, 4)
    y, _ = layer(x, m)
    y.sum().backward()
    assert layer.conv.weight.grad is not None and x.grad is not None and m.grad is None


def test_urim_shapes_and_final_layer():
    torch.manual_seed(2)
    urim = URIM(4, num_classes=2, num_layers=4)
    feats, logits = torch.randn(1, 4, 6, 7), torch.randn(1, 2, 6, 7) * 3
    final, conf = urim(feats, logits)
    assert final.shape == (1, 2, 6, 7) and conf.shape == (1, 1, 6, 7)
    torch.testing.assert_close(conf.double(), _naive_confidence(logits), atol=1e-6, rtol=1e-5)
    # reproduce the chain by hand: M updated by a 3x3 max after each layer, then concat -> 1x1 conv
    x, m = feats.double(), conf.double()
    for layer in urim.layers:
        x_ref, m_ref = _naive_lcconv(layer, x, m)
        x, m = x_ref, m_ref
    w = urim.classifier.weight.detach().double()[:, :, 0, 0]
    cat = torch.cat([x, feats.double()], dim=1)
    ref = torch.einsum("oc,nchw->nohw", w, cat) + urim.classifier.bias.detach().double().view(1, -1, 1, 1)
    torch.testing.assert_close(final.double(), ref, atol=1e-4, rtol=1e-4)


def test_urim_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="spatial size"):
        URIM(4)(torch.randn(1, 4, 8, 8), torch.randn(1, 2, 4, 4))


def test_uncertainty_is_one_minus_confidence():
    logits = torch.randn(1, 2, 4, 4)
    u = uncertainty_map(logits)
    torch.testing.assert_close(u.double(), 1 - _naive_confidence(logits), atol=1e-6, rtol=1e-5)
