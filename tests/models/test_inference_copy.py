"""`models.inference`: folding conv -> BN and channels_last keep every registered model's outputs
(float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpliver.extras import nnunet_available
from mpliver.models import create_model, list_models
from mpliver.models.inference_copy import fuse_conv_bn, inference_model

# nnunet2d_native needs the nnU-Net extra (not installed in CI): the other models build everywhere
BUILDABLE = [n for n in list_models() if n != "nnunet2d_native" or nnunet_available()]

SINGLE_INPUT = {"single_phase", "liver_resunet"}


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g, dtype=torch.float64))
            m.bias.data.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)


@pytest.mark.parametrize("name", BUILDABLE)
def test_inference_copy_equals_the_eval_model_in_float64(name):
    torch.manual_seed(0)
    model = create_model(name, width=0.25, blocks=(1, 1, 2, 1)) if name in {"paper", "add", "single_phase"} \
        else create_model(name, width=0.25)
    model = model.double().eval()
    _randomise_bn(model)
    g = torch.Generator().manual_seed(1)
    phases = [torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64)
              for _ in range(1 if name in SINGLE_INPUT else 2)]
    fast = inference_model(model)
    with torch.no_grad():
        ref, out = model(phases), fast(phases)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-9, atol=1e-9, msg=f"{name}: {key}")
    had_bn = any(isinstance(m, nn.BatchNorm2d) for m in create_model(name, width=0.25).modules())
    assert had_bn == any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), \
        "the original must keep its BatchNorms"


def test_every_batchnorm_of_the_paper_network_is_folded():
    model = create_model("paper", width=0.25).eval()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast = inference_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fuse_conv_bn(create_model("paper", width=0.25).eval()) == n_bn
    assert all(not p.requires_grad for p in fast.parameters())
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_batchnorm_that_does_not_follow_its_conv_directly_is_kept():
    class Odd(nn.Module):  # bn applied after a ReLU: folding would be wrong, and nothing declares the pair
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn1(torch.relu(self.conv1(x)))

    class OwnForward(nn.Sequential):  # a Sequential subclass that does not chain its children
        def forward(self, x):
            return self[1](x) + self[0](x)

    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    odd = Odd().eval()
    own = OwnForward(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()
    assert fuse_conv_bn(seq) == 0 and fuse_conv_bn(odd) == 0 and fuse_conv_bn(own) == 0
    assert isinstance(odd.bn1, nn.BatchNorm2d) and isinstance(seq[2], nn.BatchNorm2d)


def test_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_conv_bn(create_model("single_phase", width=0.25))
