"""The loss: CE(initial) + CE(final) with URIM, CE(logits) without, against a float64 re-computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpliver.models import create_model, loss_terms, segmentation_loss


def _ce64(logits: torch.Tensor, target: torch.Tensor) -> float:
    z = logits.detach().double()
    logp = z - torch.logsumexp(z, dim=1, keepdim=True)
    return float(-logp.gather(1, target[:, None]).mean())


def test_urim_loss_is_the_sum_of_both_terms():
    torch.manual_seed(0)
    out = {"logits": torch.randn(2, 2, 8, 8), "initial": torch.randn(2, 2, 8, 8),
           "confidence": torch.rand(2, 1, 2, 2)}
    y = torch.randint(0, 2, (2, 8, 8))
    expected = _ce64(out["logits"], y) + _ce64(out["initial"], y)
    assert float(segmentation_loss(out, y)) == pytest.approx(expected, rel=1e-5)
    assert set(loss_terms(out, y)) == {"final", "initial"}


def test_plain_loss_and_bf16_logits():
    torch.manual_seed(1)
    out = {"logits": torch.randn(3, 2, 4, 4)}
    y = torch.randint(0, 2, (3, 4, 4), dtype=torch.uint8)
    assert float(segmentation_loss(out, y)) == pytest.approx(_ce64(out["logits"], y.long()), rel=1e-5)
    low = segmentation_loss({"logits": out["logits"].bfloat16()}, y)
    assert low.dtype == torch.float32


@pytest.mark.parametrize("name", ["paper", "dlf", "mc_fcn"])
def test_loss_on_model_outputs(name):
    model = create_model(name, width=0.25, blocks=(1, 1, 1, 1))
    out = model([torch.rand(1, 3, 64, 64) for _ in range(2)])
    y = torch.randint(0, 2, (1, 64, 64))
    expected = sum(_ce64(out[k], y) for k in ("logits", "initial") if k in out)
    loss = segmentation_loss(out, y)
    assert loss.requires_grad
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_bad_target_is_refused():
    with pytest.raises(ValueError, match="integer class map"):
        segmentation_loss({"logits": torch.randn(1, 2, 4, 4)}, torch.rand(1, 4, 4))


def _soft_dice_loss_f64(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the foreground class pooled over the batch, in float64 (MONAI's smoothing 1e-5)."""
    p1 = torch.softmax(logits.double(), dim=1)[:, 1]
    t1 = (target == 1).double()
    return 1 - (2 * (p1 * t1).sum() + 1e-5) / (p1.sum() + t1.sum() + 1e-5)


def test_dice_ce_is_ce_plus_batch_soft_dice_on_every_term():
    from mpliver.models.loss import dice_ce_loss

    g = torch.Generator().manual_seed(0)
    logits, initial = torch.randn(2, 2, 6, 5, generator=g), torch.randn(2, 2, 6, 5, generator=g)
    target = (torch.rand(2, 6, 5, generator=g) > 0.7).long()
    weight = torch.tensor([1.0, 5.0])
    expected = sum(F.cross_entropy(x.double(), target, weight=weight.double())
                   + _soft_dice_loss_f64(x, target) for x in (logits, initial))
    got = dice_ce_loss(weight)({"logits": logits, "initial": initial}, target)
    assert torch.allclose(got.double(), expected, atol=1e-5)
    plain = dice_ce_loss()({"logits": logits}, target)  # no URIM: one term
    assert torch.allclose(plain.double(), F.cross_entropy(logits.double(), target)
                          + _soft_dice_loss_f64(logits, target), atol=1e-5)


def test_the_config_chooses_the_loss():
    from mpliver.errors import ConfigError
    from mpliver.training.config import load_config
    from mpliver.training.data import build_loss

    g = torch.Generator().manual_seed(1)
    out, target = {"logits": torch.randn(1, 2, 4, 4, generator=g)}, torch.zeros(1, 4, 4, dtype=torch.long)
    ce = build_loss(load_config("paper"))(out, target)
    dice_ce = build_loss(load_config("paper", ["train.loss=dice_ce"]))(out, target)
    expected = ce.double() + _soft_dice_loss_f64(out["logits"], target)
    assert torch.allclose(dice_ce.double(), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="loss must be one of ce, dice_ce"):
        load_config("paper", ["train.loss=dice"])


def test_ignored_pixels_count_in_no_term():
    """IGNORE_INDEX pixels: CE is the mean over the other pixels (float64), and neither CE nor Dice + CE moves
    when the logits change on the ignored pixels only."""
    from mpliver.io.labels import IGNORE_INDEX
    from mpliver.models.loss import dice_ce_loss

    g = torch.Generator().manual_seed(3)
    logits, initial = torch.randn(2, 2, 6, 6, generator=g), torch.randn(2, 2, 6, 6, generator=g)
    target = (torch.rand(2, 6, 6, generator=g) > 0.6).long()
    ignored = torch.zeros(2, 6, 6, dtype=torch.bool)
    ignored[0, 1:4, 2:5] = True
    target[ignored] = IGNORE_INDEX
    keep = ~ignored
    z = logits.double().permute(0, 2, 3, 1)[keep]  # (pixels, 2)
    expected = float(-(z - torch.logsumexp(z, 1, keepdim=True)).gather(1, target[keep][:, None]).mean())
    assert float(segmentation_loss({"logits": logits}, target)) == pytest.approx(expected, rel=1e-6)
    moved = logits.clone()
    moved[:, 1][ignored] += 7.0
    moved_initial = initial.clone()
    moved_initial[:, 0][ignored] -= 5.0
    for fn in (segmentation_loss, dice_ce_loss(), dice_ce_loss(torch.tensor([1.0, 5.0]))):
        a = fn({"logits": logits, "initial": initial}, target)
        b = fn({"logits": moved, "initial": moved_initial}, target)
        assert torch.isfinite(a) and float(a) == pytest.approx(float(b), rel=1e-6)
    # without ignored pixels Dice + CE is unchanged by the masking path
    plain = target.clamp(min=0)
    assert float(dice_ce_loss()({"logits": logits}, plain)) == pytest.approx(
        float(F.cross_entropy(logits.double(), plain) + _soft_dice_loss_f64(logits, plain)), abs=1e-5)
