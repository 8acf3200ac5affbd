"""Under bf16 autocast, SAM and URIM never make float32 copies of feature-sized tensors, and never unfold."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mpliver.models import SAM, URIM


class _RecordOps(TorchDispatchMode):
    """Records (op name, output dtype, numel) of every aten op that runs."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, torch.dtype, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.ops.append((str(func), t.dtype, t.numel()))
        return out


def _large_float32(ops, threshold: int) -> list[str]:
    return [name for name, dtype, numel in ops if dtype == torch.float32 and numel >= threshold]


def test_sam_and_urim_stay_in_bf16():
    torch.manual_seed(0)
    channels, size = 32, 16
    sam, urim = SAM(channels, 2), URIM(channels)
    feats = [torch.randn(2, channels, size, size).bfloat16() for _ in range(2)]
    logits = torch.randn(2, 2, size, size).bfloat16()
    feature_numel = feats[0].numel()
    with torch.autocast("cpu", dtype=torch.bfloat16), _RecordOps() as rec:
        aggr, _ = sam(feats)
        final, confidence = urim(aggr, logits)
    assert aggr.dtype == torch.bfloat16 and final.dtype == torch.bfloat16
    assert confidence.dtype == torch.float32  # (N, 1, h, w): the one float32 map, by design
    # only (N, K, h, w)-sized float32 tensors (the eq. 3 softmax) are allowed; features are (N, C, h, w)
    assert _large_float32(rec.ops, feature_numel // 4) == []
    names = " ".join(name for name, _, _ in rec.ops)
    assert "im2col" not in names and "unfold" not in names
