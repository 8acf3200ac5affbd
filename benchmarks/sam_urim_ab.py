"""Same-run A/B of the SAM/URIM speed changes (issue 7): `paper` with the original eager SAM and URIM
forward passes ("paper-before"), with the current ones except SAM's global-branch shortcut ("paper-stacked"),
the current ones ("paper"), and `add` as the reference, interleaved by round.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sam_urim_ab.py [--size 128 --batch 4 --width 0.25]
    python benchmarks/sam_urim_ab.py --device cuda --size 512 --batch 16 --width 1 --bf16 --fused   # GPU

"paper-before" is the same module with the forward methods of the first implementation bound to its SAM,
LC-Conv and URIM instances (identical parameters): grouped 2N-channel projection + softmax over the stacked
(B, N, C, H, W) logits + eqs. 1-2 as separate multiplies and adds; LC-Conv's denominator recomputed per layer
and division, bias and ReLU as three passes. With `--fused`, "paper-fused" is `paper` with SAM's elementwise
chains compiled into fused kernels (`set_fused_sam("always")`; compiled during the untimed first round).
Ratios are medians of per-round paired ratios to `add`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types

import torch
import torch.nn.functional as F

from mpliver.models import SAM, URIM, LCConv, confidence_map, create_model, segmentation_loss
from mpliver.models.fusion.base import aggregate, phase_softmax
from mpliver.models.fusion.sam import blend_two, set_fused_sam
from mpliver.models.urim import DENOM_FLOOR, box_sum


def sam_forward_before(self, features):
    b, _, h, w = features[0].shape
    mapped = self.mapping_outputs(features)
    w0 = self.project(mapped).reshape(b, self.num_phases, self.channels, h, w)
    return aggregate(features, phase_softmax(w0, dim=1).unbind(dim=1))


def sam_forward_stacked(self, features):
    """SAM before the global-branch change: the 3x3 projection over all four stacked branch outputs."""
    z = self.logit_difference(self.mapping_outputs(features))
    return blend_two(features[0], features[1], z)


def lcconv_forward_before(self, x, m):
    num = self.conv(x * m.to(x.dtype))
    m_acc = m.to(torch.promote_types(m.dtype, torch.float32))
    denom = box_sum(m_acc, self.kernel_size).clamp_min(DENOM_FLOOR)
    y = num / denom.to(num.dtype) + self.bias.to(num.dtype).view(1, -1, 1, 1)
    if self.relu:
        y = F.relu(y)
    return y, F.max_pool2d(m, 3, stride=1, padding=1)


def urim_forward_before(self, features, logits):
    confidence = confidence_map(logits)
    x, m = features, confidence
    for layer in self.layers:
        x, m = layer(x, m)
    return self.classifier(torch.cat([x, features], dim=1)), confidence


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    before = copy.deepcopy(model)
    for mod in before.modules():
        pairs = ((SAM, sam_forward_before), (LCConv, lcconv_forward_before), (URIM, urim_forward_before))
        for cls, fn in pairs:
            if isinstance(mod, cls):
                mod.forward = types.MethodType(fn, mod)
    return before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fused", action="store_true",
                    help="add 'paper-fused' (SAM's elementwise work compiled)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    paper = create_model("paper", width=args.width).to(dev)
    stacked = copy.deepcopy(paper)
    for mod in stacked.modules():
        if isinstance(mod, SAM):
            mod.forward = types.MethodType(sam_forward_stacked, mod)
    models = {"paper-before": as_before(paper), "paper-stacked": stacked, "paper": paper}
    if args.fused:
        models["paper-fused"] = copy.deepcopy(paper)
    models["add"] = create_model("add", width=args.width).to(dev)
    xs = [torch.rand(args.batch, 3, args.size, args.size, device=dev) for _ in range(2)]
    y = (torch.rand(args.batch, args.size, args.size, device=dev) > 0.8).long()
    opts = {n: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for n, m in models.items()}
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=args.bf16)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def train(n):
        set_fused_sam("always" if n == "paper-fused" else "off")
        models[n].train()
        opts[n].zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            out = models[n](xs)
        segmentation_loss(out, y).backward()
        opts[n].step()
        sync()

    def infer(n):
        set_fused_sam("always" if n == "paper-fused" else "off")
        models[n].eval()
        with torch.inference_mode(), torch.autocast(**amp):
            models[n](xs)
        sync()

    times = {(n, k): [] for n in models for k in ("train", "infer")}
    names = list(models)
    for r in range(args.iters + 1):
        order = names[r % len(names):] + names[:r % len(names)]
        for kind, fn in (("train", train), ("infer", infer)):
            for n in order:
                t = time.perf_counter()
                fn(n)
                if r:
                    times[n, kind].append(time.perf_counter() - t)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {args.size}x{args.size}, batch "
          f"{args.batch}, width {args.width}, {'bf16' if args.bf16 else 'fp32'}, {args.iters} rounds")
    print("| model | train slices/s | train / add | infer slices/s | infer / add |\n|---|---|---|---|---|")
    for n in names:
        cells = []
        for kind in ("train", "infer"):
            ts, ref = times[n, kind], times["add", kind]
            ratio = statistics.median(a / b for a, b in zip(ref, ts, strict=True))
            cells += [f"{args.batch / statistics.median(ts):.2f}", f"{ratio:.2f}"]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
