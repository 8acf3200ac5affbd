"""One prepared GPU session for issue 7: correctness on CUDA, then throughput, in sections that each run in
their own process with a time limit, so that one slow section (compilation) cannot take the others down.

    python3 benchmarks/gpu_check.py --out OUT [--sections check,eager,compile,ab,predict,demo] [--budget 540]

Sections:
- check: the `paper` network on CUDA against a float64 CPU reference (fp32, bf16 autocast, the inference copy
  with BN folded, SAM's fused kernels, forward and gradients), and one bf16 channels_last training step.
- eager: `mpliver bench` at 512x512, batch 16, width 1, bf16 for paper, add, single_phase, nnunet2d; then
  paper/add with channels_last, and with channels_last plus fused SAM kernels.
- compile: the same for paper/add with torch.compile (every model compiled, ratios compiled vs compiled).
- ab: benchmarks/sam_urim_ab.py (the first SAM/URIM implementation vs the current one vs fused, and add).
- predict: benchmarks/predict_time.py on the GPU, default preset (256 liver crop).
- demo: `mpliver demo --quick` on the GPU (the whole pipeline on CUDA).
- throughput (issue 16): benchmarks/predict_throughput.py, 24 studies of 512x512x100 (2 distinct phantoms),
  `predict --input` with --workers 1 against --workers = the host's cores, studies per hour and the ratio.
Every section prints its results and writes JSON under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu" only for a dry run of the script itself
SMALL = DEVICE == "cpu"  # dry run: tiny sizes
SECTIONS = ("check", "eager", "ab", "predict", "demo", "compile", "throughput")
# wall-clock limits per section (s); the whole run also stops starting sections once --budget is spent
LIMITS = {"check": 60, "eager": 110, "ab": 60, "predict": 70, "demo": 130, "compile": 300,
          "compile_train": 330, "throughput": 420}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rel(a, b) -> float:
    import torch

    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def section_check(out: Path) -> None:
    import torch

    from mpliver.models import create_model, segmentation_loss
    from mpliver.models.fusion.sam import set_fused_sam
    from mpliver.models.inference_copy import inference_model

    dev = torch.device(DEVICE)
    torch.manual_seed(0)
    ref_model = create_model("paper", width=0.25, blocks=(1, 1, 1, 1)).double()
    for m in ref_model.modules():  # non-trivial BN statistics for the fold check
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(4, 3, 96, 96, generator=g, dtype=torch.float64) for _ in range(2)]
    y = (torch.rand(4, 96, 96, generator=g) > 0.8).long()
    results: dict[str, float] = {}

    ref_model.eval()
    with torch.no_grad():
        ref = ref_model(xs)
    gpu = create_model("paper", width=0.25, blocks=(1, 1, 1, 1))
    gpu.load_state_dict({k: v.float() for k, v in ref_model.state_dict().items()})
    gpu = gpu.to(dev).eval()
    xg = [x.float().to(dev) for x in xs]
    with torch.no_grad():
        results["eval fp32 logits"] = rel(gpu(xg)["logits"], ref["logits"])
        results["eval fp32 confidence"] = rel(gpu(xg)["confidence"], ref["confidence"])
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            results["eval bf16 logits"] = rel(gpu(xg)["logits"].float(), ref["logits"])
        fast = inference_model(gpu, dev)
        results["inference copy fp32 logits"] = rel(fast([x.contiguous(memory_format=torch.channels_last)
                                                           for x in xg])["logits"], ref["logits"])
        set_fused_sam("cuda")
        results["fused SAM fp32 logits"] = rel(gpu(xg)["logits"], ref["logits"])
        set_fused_sam("off")

    # gradients: float64 CPU reference vs CUDA fp32, eager and fused
    ref_model.train()
    ref_model.zero_grad()
    segmentation_loss(ref_model(xs), y).backward()
    ref_grads = [p.grad.clone() for p in ref_model.parameters()]
    gpu.train()
    for mode in ("off", "cuda"):
        set_fused_sam(mode)
        gpu.load_state_dict({k: v.float() for k, v in ref_model.state_dict().items()})
        gpu.zero_grad()
        segmentation_loss(gpu(xg), y.to(dev)).backward()
        errors = sorted(((rel(p.grad, r), n, float(r.norm())) for (n, p), r in
                         zip(gpu.named_parameters(), ref_grads, strict=True)), reverse=True)
        label = "fused" if mode == "cuda" else "eager"
        results[f"train grads fp32 worst param ({label} SAM)"] = errors[0][0]
        results[f"train grads fp32 median param ({label} SAM)"] = errors[len(errors) // 2][0]
        for err, name, norm in errors[:3]:  # which tensors: tiny gradients suffer most from TF32
            log(f"check: {label}: {name}: rel. error {err:.2e}, float64 |grad| {norm:.2e}")
    set_fused_sam("off")

    # one bf16 channels_last training step of the full-width network at 512x512
    big = create_model("paper", width=0.25 if SMALL else 1.0).to(dev)
    big = big.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(big.parameters(), lr=5e-4, momentum=0.9)
    side = 64 if SMALL else 512
    xb = [torch.rand(4, 3, side, side, device=dev).contiguous(memory_format=torch.channels_last)
          for _ in range(2)]
    yb = (torch.rand(4, side, side, device=dev) > 0.8).long()
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        loss = segmentation_loss(big(xb), yb)
    loss.backward()
    opt.step()
    results["bf16 512px train step loss (finite)"] = float(loss.detach())
    for k, v in results.items():
        log(f"check: {k}: {v:.3e}")
    (out / "check.json").write_text(json.dumps(results, indent=1))


def _bench(out: Path, name: str, **kw) -> None:
    from mpliver.apps.bench import BenchConfig, run_bench, write_json
    from mpliver.cli.bench import print_table

    if SMALL:
        kw.update(iters=1, warmup=1)
    cfg = BenchConfig(device=DEVICE, size=64 if SMALL else 512, batch=2 if SMALL else 16,
                      width=0.125 if SMALL else 1.0, dtype="bf16", **kw)
    t = time.perf_counter()
    result = run_bench(cfg, progress=lambda m: log(f"{name}: {m}"))
    result["wall_s"] = time.perf_counter() - t
    write_json(result, out / f"bench_{name}.json")
    print_table(result)
    log(f"{name}: {result['wall_s']:.0f} s")


def section_eager(out: Path) -> None:
    _bench(out, "eager", models=("paper", "add", "single_phase", "nnunet2d"), iters=8, warmup=2)
    _bench(out, "eager_cl", models=("paper", "add", "single_phase", "nnunet2d"), channels_last=True, iters=8,
           warmup=2)
    _bench(out, "eager_cl_fused", models=("paper", "add"), channels_last=True, fused_sam=True, iters=8,
           warmup=2, memory=False)


def section_compile(out: Path) -> None:
    # inference first (forward graphs only, quicker to compile), then training (forward + backward graphs)
    _bench(out, "compiled_cl_infer", models=("paper", "add"), channels_last=True, compile=True, train=False,
           iters=8, warmup=1)
    _bench(out, "compiled_cl_train", models=("paper", "add"), channels_last=True, compile=True, infer=False,
           iters=8, warmup=1)


def section_compile_train(out: Path) -> None:
    """Compiled training alone (its forward + backward graphs took over 200 s to compile on an H100 host)."""
    _bench(out, "compiled_cl_train", models=("paper", "add"), channels_last=True, compile=True, infer=False,
           iters=6, warmup=1, memory=False)


def _wait_group(proc: subprocess.Popen, limit: float, name: str) -> None:
    """Wait for `proc` (started with start_new_session=True); past `limit` s kill its whole process group."""
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log(f"{name}: stopped at its {limit:.0f} s limit")


def _run(cmd: list[str], out: Path, name: str, limit: float) -> None:
    """Run `cmd` with its output streamed into OUT/name.log (kept if it is stopped), for at most `limit` s
    or what is left of the section's own limit (SECTION_LEFT), then print the log's tail."""
    limit = min(limit, float(os.environ.get("SECTION_LEFT", limit)))
    log(f"{name}: {' '.join(cmd)} (limit {limit:.0f} s)")
    path = out / f"{name}.log"
    with open(path, "w") as fh:
        _wait_group(subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                     start_new_session=True), limit, name)
    print(path.read_text()[-3000:], flush=True)


def section_ab(out: Path) -> None:
    size = ["--size", "64", "--batch", "2", "--width", "0.125", "--iters", "1"] if SMALL else \
        ["--size", "512", "--batch", "16", "--width", "1", "--iters", "6"]
    _run([sys.executable, "benchmarks/sam_urim_ab.py", "--device", DEVICE, *size, "--bf16", "--fused"], out,
         "ab", LIMITS["ab"] - 5)


def section_predict(out: Path) -> None:
    for preset in ("default",):
        _run([sys.executable, "benchmarks/predict_time.py", "--device", DEVICE, "--preset", preset,
              "--json", str(out / f"predict_{preset}.json"), "--work", "/tmp/predict_time"], out,
             f"predict_{preset}", LIMITS["predict"] - 5)


def section_demo(out: Path) -> None:
    _run([sys.executable, "-m", "mpliver", "demo", "--quick", "--out", "/tmp/demo_gpu"], out, "demo",
         LIMITS["demo"] - 5)


def section_throughput(out: Path) -> None:
    size = ["--studies", "2", "--shape", "128", "128", "24"] if SMALL else \
        ["--studies", "24", "--distinct", "2"]
    _run([sys.executable, "benchmarks/predict_throughput.py", "--device", DEVICE, *size, "--workers",
          str(os.cpu_count() or 2), "--json", str(out / "throughput.json"),
          "--md", str(out / "throughput.md"), "--work", "/tmp/throughput"], out, "throughput",
         LIMITS["throughput"] - 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--budget", type=float, default=580.0, help="seconds for the whole run")
    ap.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.section:
        globals()[f"section_{args.section}"](args.out)
        return
    start = time.perf_counter()
    for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
        left = args.budget - (time.perf_counter() - start)
        limit = min(LIMITS[name], left - 5)
        if limit < 30:
            log(f"{name}: skipped, {left:.0f} s left")
            continue
        log(f"== {name} (limit {limit:.0f} s)")
        # a section runs in its own process group, so that stopping it also stops what it started
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SECTION_LEFT": str(limit - 5)}
        _wait_group(subprocess.Popen([sys.executable, __file__, "--out", str(args.out), "--section", name],
                                     cwd=ROOT, env=env, start_new_session=True), limit, name)
    log(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
