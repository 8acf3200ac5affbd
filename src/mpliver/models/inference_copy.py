"""Inference copies of trained networks: BatchNorm folded into the convolution before it, channels_last.

In eval mode a BatchNorm is an affine map per channel, so conv -> BN equals one convolution with scaled
weights and a bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`). Folding removes one feature-sized pass per
BN, and channels_last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest convolution kernels (the speed-up
is measured in benchmarks/RESULTS.md, "Inference copies").

Pairs are folded only where the forward pass is known to apply the BN directly to the conv's output:
adjacent (Conv2d, BatchNorm2d) children of an `nn.Sequential` that keeps Sequential's forward, and the
(conv, bn) attribute pairs that a module class lists in `CONV_BN_PAIRS`. The copy is for inference only:
its BatchNorms are gone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.num_features == conv.out_channels)


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every known conv -> BN pair of an eval-mode `model` in place; returns the number folded."""
    if model.training:
        raise ValueError("fuse_conv_bn needs a model in eval mode (BatchNorm running statistics)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            children = list(module.children())
            for i in range(len(children) - 1):
                conv, bn = children[i], children[i + 1]
                if _foldable(conv, bn):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
                    children[i + 1] = module[i + 1]
                    folded += 1
        for conv_name, bn_name in getattr(type(module), "CONV_BN_PAIRS", ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if conv is not None and bn is not None and _foldable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def inference_model(model: nn.Module, device: torch.device | str | None = None,
                    channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of `model` for inference: conv -> BN folded, on `device`, channels_last weights.

    The original is not touched (it may keep training). Outputs equal the original's in eval mode up to
    float rounding (tests/models/test_inference.py).
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fuse_conv_bn(fast)
    if device is not None:
        fast = fast.to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast
