"""Why the same command gives other numbers on another CPU: run one small cross-validation under kernel
settings that stand in for other machines, and compare weights and per-case DPC with the default run.

Variants (each in its own process, since the settings must precede `import torch`):
- `default`, and `default_again` (the same machine twice: identical, the determinism the tests check);
- `avx2`: ATen's vectorised kernels and oneDNN limited to AVX2, as on a CPU without AVX-512;
- `threads1`: one intra-op thread instead of two (a machine with another core count splits reductions
  differently).

    PYTHONPATH=src python benchmarks/isa_spread.py --out /tmp/isa_spread
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "default": ({}, []),
    "default_again": ({}, []),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "threads1": ({}, ["train.threads=1"]),
}
OVERRIDES = [
    "model.width=0.25", "model.blocks=[1,1,1,1]", "data.input_size=64", "optim.epochs=4",
    "optim.step_epochs=3", "data.slices_per_epoch=64", "data.val_fraction=0.2", "data.val_max_slices=32",
    "data.num_workers=0", "train.progress=false", "train.tensorboard=false", "train.device=cpu",
]
CHILD = """
import sys, torch
from mpliver.training.config import load_config
from mpliver.experiments.crossval import crossval
config = load_config("cpu-small", sys.argv[3:])
crossval(config, sys.argv[1], sys.argv[2])
print("capability", torch.backends.cpu.get_cpu_capability(), "threads", torch.get_num_threads())
"""


def _dpc(run: Path) -> dict[str, float]:
    with (run / "evaluation" / "per_case.csv").open(newline="") as handle:
        return {r["case"]: float(r["dice"]) for r in csv.DictReader(handle)}


def _loss_gaps(a: Path, b: Path) -> list[float]:
    """|train loss difference| per epoch of fold 0: how a first rounding difference grows with training."""
    def losses(run: Path) -> list[float]:
        with (run / "fold_0" / "log.csv").open(newline="") as handle:
            return [float(r["train_loss"]) for r in csv.DictReader(handle)]

    return [float(f"{abs(x - y):.3g}") for x, y in zip(losses(a), losses(b), strict=True)]


def _weights_gap(a: Path, b: Path) -> float:
    import torch

    gap = 0.0
    for fold in sorted(p.name for p in a.glob("fold_*")):
        wa = torch.load(a / fold / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
        wb = torch.load(b / fold / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
        for k, v in wa.items():
            if v.is_floating_point():
                gap = max(gap, float((v - wb[k]).abs().max()))
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from mpliver.data.phantom import PhantomConfig, write_cohort

    cohort = args.out / "cohort"
    if not (cohort / "dataset.json").exists():
        write_cohort(cohort, 12, seed=0, config=PhantomConfig(shape=(96, 96, 24), spacing=(3.2, 3.2, 7.0)),
                     previews=False, num_folds=2)
    for name, (env, extra) in VARIANTS.items():
        run = args.out / name
        if (run / "crossval.json").exists():
            continue
        child_env = {**os.environ, **env}
        done = subprocess.run([sys.executable, "-c", CHILD, str(cohort), str(run), *OVERRIDES, *extra],
                              env=child_env, capture_output=True, text=True, check=True)
        print(name, done.stdout.strip().splitlines()[-1])
    base = _dpc(args.out / "default")
    rows = []
    for name in VARIANTS:
        dpc = _dpc(args.out / name)
        diffs = [dpc[c] - base[c] for c in base]
        mean = sum(dpc.values()) / len(dpc)
        rows.append({"variant": name, "mean DPC": round(mean, 3),
                     "max |weight diff| vs default": _weights_gap(args.out / "default", args.out / name),
                     "max |case DPC diff| vs default": round(max(abs(d) for d in diffs), 3),
                     "fold 0 |train loss diff| per epoch": _loss_gaps(args.out / "default", args.out / name),
                     "identical to default": all(d == 0 for d in diffs)})
    print(json.dumps(rows, indent=1))
    (args.out / "isa_spread.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
