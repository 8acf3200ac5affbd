"""Does data loading keep up with training? Slices/s delivered by the DataLoader (augmentation on) against the
time of one training step of create_model('paper', width=0.25) at the default input size. The loader is
`data.sampling.make_loader` over an epoch's sampled indices: the one training builds each epoch.

    .venv/bin/python benchmarks/loader_throughput.py [--cases 6] [--workers 2] [--batch 8] [--work DIR]

Writes a small phantom cohort and its cache in a temporary folder (or --work), then measures
1. the loader alone with `--workers` workers (slices/s),
2. the loader in the main process (CPU seconds per slice: the cost a worker pays),
3. forward + backward + SGD step of the model on one batch (seconds per step),
and prints whether loading would stall training. On a CPU the workers share the cores with training, so the
relevant figure there is the share of CPU time spent loading.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mpliver.data.cache import preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset
from mpliver.data.phantom import write_cohort
from mpliver.data.sampling import make_loader
from mpliver.data.transforms import AffineAugmentation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--samples", type=int, default=192, help="slices drawn per loader measurement")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps")
    ap.add_argument("--work", help="folder for the cohort and the cache (default: a temporary folder)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(args.work or tmp.name)
    cohort = work / "cohort"
    if not (cohort / "dataset.json").exists():
        write_cohort(cohort, args.cases, seed=0, previews=False)
    t0 = time.time()
    preprocess_dataset(cohort, work / "cache", PreprocessConfig(input_size=args.input_size), workers=2)
    print(f"preprocess {args.cases} cases: {time.time() - t0:.1f} s wall (2 workers, cached cases reused)")
    cases = sorted(p.name for p in (work / "cache" / "cases").iterdir() if not p.name.startswith("."))
    data = SliceDataset(work / "cache", cases, augmentation=AffineAugmentation())
    print(f"{len(data)} slices, {len(data.tumor_items)} with tumour, input {tuple(data[0]['phases'].shape)}")

    def loader_rate(workers: int) -> tuple[float, float]:
        sampler = data.sampler(num_samples=args.samples, tumor_share=0.5, seed=0)  # as training_data() does
        loader = make_loader(data, sampler.indices(), args.batch, num_workers=workers, seed=0)
        it = iter(loader)
        next(it)  # worker start-up is not part of the steady state
        n, w0, c0 = 0, time.perf_counter(), time.process_time()
        for batch in it:
            n += len(batch["label"])
        return n / (time.perf_counter() - w0), (time.process_time() - c0) / max(n, 1)

    rate_w, _ = loader_rate(args.workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (PyTorch gives each worker one thread)
    rate_0, cpu_per_slice = loader_rate(0)
    torch.set_num_threads(threads)
    print(f"loader, {args.workers} workers: {rate_w:.0f} slices/s")
    print(f"loader, main process, 1 thread: {rate_0:.0f} slices/s "
          f"({cpu_per_slice * 1e3:.1f} ms CPU per slice)")

    try:
        from mpliver.models import create_model, segmentation_loss  # lazy: the loader figures stand alone
        model = create_model("paper", width=0.25)
    except Exception as exc:  # the models package is someone else's; say so instead of failing
        print(f"create_model('paper', width=0.25) unavailable: {exc}")
        return
    opt = torch.optim.SGD(model.parameters(), lr=5e-4, momentum=0.9, weight_decay=1e-4)
    batch = next(iter(make_loader(data, data.sampler(num_samples=args.batch).indices(), args.batch)))
    phases = list(batch["phases"].unbind(1))
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = segmentation_loss(model(phases), batch["label"])
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - t0) / args.steps
    train_rate = args.batch / step_s
    print(f"training step, batch {args.batch} at {args.input_size}^2 on {torch.get_num_threads()} thread(s): "
          f"{step_s:.2f} s ({train_rate:.1f} slices/s)")
    share = cpu_per_slice * train_rate
    print(f"loading needs {cpu_per_slice * 1e3:.1f} ms CPU per slice = {100 * share:.1f}% of one core at the "
          f"training rate; {args.workers} workers deliver {rate_w / train_rate:.0f}x what training consumes")
    print("verdict: " + ("data loading would not stall training" if rate_w > 2 * train_rate
                         else "data loading may stall training"))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
