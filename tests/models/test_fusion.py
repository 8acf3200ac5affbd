"""SAM and the other fusions against float64 re-computations with the modules' own weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mpliver.models import SAM, AddFusion, MWFusion, PAFusion


def _randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)


def _conv_bn_relu(block: torch.nn.Sequential, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """One phase's slice of a batched conv-BN-ReLU branch, evaluated by hand (BN in eval mode)."""
    conv, bn = block[0], block[1]
    y = F.conv2d(x, conv.weight[rows], padding=conv.padding)
    scale = bn.weight[rows] / torch.sqrt(bn.running_var[rows] + bn.eps)
    y = (y - bn.running_mean[rows].view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)
    y = y + bn.bias[rows].view(1, -1, 1, 1)
    return y.clamp_min(0)


def _reference_sam(sam: SAM, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """w and F_aggr of SAM as N separate mappings M(p) (docs/method.md §3), in float64."""
    n, k, c = sam.num_phases, sam.branch_channels, sam.channels
    desc = torch.cat([t for f in feats for t in (f.mean(1, keepdim=True), f.max(1, keepdim=True).values)], 1)
    logits = []
    for p in range(n):
        rows = slice(p * k, (p + 1) * k)
        glob = _conv_bn_relu(sam.branch_global, desc, rows).mean(dim=(2, 3), keepdim=True)
        glob = glob.expand(-1, -1, *desc.shape[-2:])
        local = [_conv_bn_relu(b, desc, rows) for b in (sam.branch7, sam.branch3, sam.branch5)]
        mapped = torch.cat([glob, *local], 1)
        out_rows = slice(p * c, (p + 1) * c)
        logits.append(F.conv2d(mapped, sam.project.weight[out_rows], sam.project.bias[out_rows], padding=1))
    e = torch.stack([torch.exp(z) for z in logits], 1)
    w = e / e.sum(1, keepdim=True)
    aggr = sum(w[:, p] * feats[p] for p in range(n))
    return w, aggr


@pytest.mark.parametrize("num_phases", [2, 3])
def test_sam_matches_per_phase_mappings_in_float64(num_phases):
    torch.manual_seed(num_phases)
    sam = SAM(5, num_phases).double()
    with torch.no_grad():
        _randomise_bn(sam)
    sam.eval()
    feats = [torch.randn(2, 5, 6, 7, dtype=torch.float64) for _ in range(num_phases)]
    with torch.no_grad():
        w = sam.response_maps(feats)
        aggr, modulated = sam(feats)
        w_ref, aggr_ref = _reference_sam(sam, feats)
    assert w.shape == (2, num_phases, 5, 6, 7)
    torch.testing.assert_close(w, w_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(aggr, aggr_ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 5, 6, 7, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (w > 0).all() and (w < 1).all()
    # eq. 2
    for f, fm in zip(feats, modulated, strict=True):
        torch.testing.assert_close(fm, (f + aggr_ref) / 2, atol=1e-12, rtol=1e-10)
    # per-element convexity: the aggregate lies between the phases
    stacked = torch.stack(feats)
    assert (aggr >= stacked.amin(0) - 1e-12).all() and (aggr <= stacked.amax(0) + 1e-12).all()


@pytest.mark.parametrize("hw", [(6, 7), (3, 3), (2, 5), (1, 1), (4, 1)])
def test_two_phase_logits_equal_the_projection_of_all_four_branches(hw):
    """The cheap route (global branch on a 3x3 constant map) equals the 3x3 projection of the stacked
    [global, 7x7, 3x3, 5x5] outputs, borders included, in float64; gradients too."""
    torch.manual_seed(sum(hw))
    sam = SAM(5, 2).double()
    with torch.no_grad():
        _randomise_bn(sam)
        sam.project.weight.normal_()
    feats = [torch.randn(3, 5, *hw, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    for mode in ("eval", "train"):
        sam.train(mode == "train")
        fast = sam.two_phase_logits(feats)
        full = sam.logit_difference(sam.mapping_outputs(feats))
        torch.testing.assert_close(fast, full, atol=1e-12, rtol=1e-10)
        g_fast = torch.autograd.grad(fast.sin().sum(), [*feats, *sam.parameters()])
        g_full = torch.autograd.grad(full.sin().sum(), [*feats, *sam.parameters()])
        for a, b in zip(g_fast, g_full, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_sam_weights_vary_per_element_and_train():
    torch.manual_seed(0)
    sam = SAM(4, 2)
    feats = [torch.randn(2, 4, 8, 8, requires_grad=True) for _ in range(2)]
    w = sam.response_maps(feats)
    assert w[:, 0].std() > 1e-3  # spatial weights, not a constant
    aggr, modulated = sam(feats)
    (aggr.square().sum() + sum(m.sum() for m in modulated)).backward()
    for name, p in sam.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(f.grad.abs().sum() > 0 for f in feats)


def test_sam_refuses_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        SAM(4, 1)
    sam = SAM(4, 2)
    with pytest.raises(ValueError, match="expected 2"):
        sam([torch.randn(1, 4, 8, 8)] * 3)
    with pytest.raises(ValueError, match="differ in shape"):
        sam([torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)])


def test_add_is_the_mean():
    feats = [torch.randn(2, 3, 4, 4) for _ in range(3)]
    aggr, modulated = AddFusion(3, 3)(feats)
    ref = (feats[0] + feats[1] + feats[2]) / 3
    torch.testing.assert_close(aggr, ref)
    torch.testing.assert_close(modulated[1], (feats[1] + ref) / 2)


def test_mw_uses_softmax_of_one_scalar_per_phase():
    mw = MWFusion(3, 2)
    with torch.no_grad():
        mw.logits.copy_(torch.tensor([math.log(3.0), 0.0]))  # softmax -> (0.75, 0.25)
    feats = [torch.randn(2, 3, 4, 4) for _ in range(2)]
    aggr, _ = mw(feats)
    torch.testing.assert_close(aggr, 0.75 * feats[0] + 0.25 * feats[1])
    aggr.sum().backward()
    assert mw.logits.grad.abs().sum() > 0


def test_pa_matches_float64_recomputation():
    torch.manual_seed(3)
    pa = PAFusion(6, 3).double()
    feats = [torch.randn(2, 6, 5, 5, dtype=torch.float64) for _ in range(3)]
    with torch.no_grad():
        aggr, modulated = pa(feats)
        ctx = torch.cat([f.mean(dim=(2, 3)) for f in feats], 1)
        l1, l2 = pa.mlp[0], pa.mlp[2]
        z = (torch.relu(ctx @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias).reshape(2, 3, 6)
        w = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
        ref = sum(w[:, p, :, None, None] * feats[p] for p in range(3))
    torch.testing.assert_close(aggr, ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(modulated[2], (feats[2] + ref) / 2, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("fusion", [SAM, AddFusion, MWFusion, PAFusion])
def test_fusions_keep_bf16_under_autocast(fusion):
    module = fusion(8, 2)
    feats = [torch.randn(1, 8, 8, 8).to(memory_format=torch.channels_last) for _ in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # what a stream hands over under autocast: bf16 feature maps
        aggr, modulated = module([f.bfloat16() for f in feats])
    assert aggr.dtype == torch.bfloat16 and all(m.dtype == torch.bfloat16 for m in modulated)
    assert torch.isfinite(aggr.float()).all()


@pytest.mark.slow
def test_fused_sam_kernels_compute_the_eager_maths():
    """`set_fused_sam('always')` (inductor kernels for the channel statistics and eqs. 1-2): forward and
    parameter gradients equal the eager path's in float32."""
    from mpliver.models.fusion.sam import set_fused_sam

    torch.manual_seed(0)
    sam = SAM(24, 2)
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(2, 24, 12, 10, generator=g, requires_grad=True) for _ in range(2)]

    def run():
        for f in feats:
            f.grad = None
        sam.zero_grad()
        aggr, mods = sam(feats)
        (aggr.square().sum() + sum((m * (i + 1)).sum() for i, m in enumerate(mods))).backward()
        return [aggr.detach(), *[m.detach() for m in mods], *[f.grad.clone() for f in feats],
                *[p.grad.clone() for p in sam.parameters()]]

    eager = run()
    try:
        set_fused_sam("always")
        fused = run()
    finally:
        set_fused_sam("off")
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums in another order


def test_fused_sam_mode_is_checked():
    from mpliver.models.fusion.sam import set_fused_sam

    with pytest.raises(ValueError, match="fused SAM mode"):
        set_fused_sam("gpu")
