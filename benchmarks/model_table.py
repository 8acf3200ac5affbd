"""Model size, CPU speed and memory numbers for the issue-3 note; prints Markdown tables.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/model_table.py [--threads 2] [--repeats 3]

1. Parameters and CPU forward time (inference_mode, eval, one warm-up, median of --repeats) at 256x256,
   batch 2, for paper / add / single_phase at width 1 and 0.25, all in one run.
2. Memory of a bf16 training step (batch 16, 512x512) for `paper`, estimated from the tensors autograd saves
   for backward (counted under CPU bf16 autocast at two small sizes, deduplicated by storage, extrapolated
   linearly in pixels x batch) plus parameters, gradients and SGD momentum in float32. An estimate, not a GPU
   measurement: it leaves out the allocator's caching and cuDNN workspaces.
3. Training-step time (forward, loss, backward, SGD step) of `cpu-small` candidates.
Timings on a shared machine vary; rerun for stable numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mpliver.models import create_model, segmentation_loss


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def phases_for(model: torch.nn.Module, batch: int, size: int) -> list[torch.Tensor]:
    n = max(1, model.config.num_phases)
    return [torch.rand(batch, 3, size, size) for _ in range(n)]


def forward_time(model: torch.nn.Module, batch: int, size: int, repeats: int) -> float:
    model.eval()
    xs = phases_for(model, batch, size)
    times = []
    with torch.inference_mode():
        model(xs)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(xs)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def saved_bytes(model: torch.nn.Module, batch: int, size: int) -> int:
    """Bytes autograd keeps for backward in one bf16-autocast training forward (shared storages once,
    parameters themselves excluded: they are counted with the optimiser state)."""
    model.train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not (t.requires_grad and t.grad_fn is None):  # skip leaf parameters
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    xs = phases_for(model, batch, size)
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16):
        loss = segmentation_loss(model(xs), torch.zeros(batch, size, size, dtype=torch.long))
    del loss
    return sum(storages.values())


def activation_model(model: torch.nn.Module) -> tuple[float, float]:
    """(bytes per input pixel per slice, constant bytes) from two sizes: saved = a * batch * H * W + c.
    The constant holds what does not grow with the input, e.g. the bf16 copies of the weights."""
    b1, b2 = saved_bytes(model, 2, 64), saved_bytes(model, 2, 128)
    a = (b2 - b1) / (2 * (128**2 - 64**2))
    return a, b1 - a * 2 * 64**2


def train_step_time(name: str, batch: int, size: int, repeats: int, **overrides) -> tuple[float, int]:
    model = create_model(name, **overrides).train()
    opt = torch.optim.SGD(model.parameters(), lr=5e-4, momentum=0.9, weight_decay=1e-4)
    xs = phases_for(model, batch, size)
    y = (torch.rand(batch, size, size) > 0.8).long()
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        segmentation_loss(model(xs), y).backward()
        opt.step()
        if i:  # the first step is the warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times), n_params(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", choices=["speed", "memory", "train"], nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, shared machine\n")

    if "speed" not in args.skip:
        print("| model | width | parameters | CPU forward, 256x256, batch 2 (s, median) |")
        print("|---|---|---|---|")
        for width in (1.0, 0.25):
            for name in ("paper", "add", "single_phase"):
                model = create_model(name, width=width)
                t = forward_time(model, 2, 256, args.repeats)
                print(f"| {name} | {width} | {n_params(model) / 1e6:.2f}M | {t:.3f} |", flush=True)
        print()

    if "memory" not in args.skip:
        model = create_model("paper")
        per_pixel, const = activation_model(model)
        act = per_pixel * 16 * 512 * 512 + const
        state = n_params(model) * 4 * 3  # fp32 weights + grads + SGD momentum
        print("| paper, bf16 training step, batch 16 at 512x512 (estimate) | GiB |")
        print("|---|---|")
        print(f"| tensors saved for backward ({per_pixel:.0f} B per input pixel and slice, fitted at batch 2,"
              f" 64^2 and 128^2; {const / 2**20:.0f} MiB constant) | {act / 2**30:.2f} |")
        print(f"| weights + grads + momentum, fp32 ({n_params(model) / 1e6:.1f}M params) "
              f"| {state / 2**30:.2f} |")
        print(f"| total before allocator/workspace overhead | {(act + state) / 2**30:.2f} |\n")

    if "train" not in args.skip:
        print("| cpu-small candidate | input | batch | parameters | train step (s, median) | slices/s |")
        print("|---|---|---|---|---|---|")
        candidates = [
            ("paper", 128, 8, dict(width=0.25)),
            ("paper", 128, 8, dict(width=0.25, blocks=(1, 1, 2, 1))),
            ("paper", 96, 8, dict(width=0.25, blocks=(1, 1, 2, 1))),
            ("paper", 128, 8, dict(width=0.125, blocks=(1, 1, 2, 1))),
        ]
        for name, size, batch, ov in candidates:
            t, p = train_step_time(name, batch, size, args.repeats, **ov)
            desc = ", ".join(f"{k}={v}" for k, v in ov.items())
            print(f"| {name} ({desc}) | {size}x{size} | {batch} | {p / 1e6:.2f}M | {t:.3f} "
                  f"| {batch / t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
