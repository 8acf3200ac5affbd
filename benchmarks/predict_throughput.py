"""Studies per hour of `predict --input`: sequential (--workers 1) against pipelined (--workers N), one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/predict_throughput.py --studies 3 --workers 2 \
        [--liver file|model] [--device cpu|cuda] [--network-options] [--json F] [--md F]
    python3 benchmarks/gpu_check.py --out OUT --sections throughput     # on a GPU host: --workers = its cores

N synthetic 512x512x100 studies (the phantom of `predict_time.py`, one seed and tumour type per study) are
written once under `--work` as a dataset (imagesTs/ and a folder of liver masks); the bundle is
`predict_time.py`'s untrained network of the preset (it costs what a trained one costs). Both batches run in
this process, one after the other, with `--overwrite`, and the second's outputs are compared with the
first's (they must be the same bytes). Reported: seconds, studies per hour, the pipelined/sequential ratio,
mean seconds per stage, `uptime`'s load averages before and after.

`--network-options` also times the network stage of one study three ways on the same stacks: eager fp32
(what `predict` runs), eager under bf16 autocast on the CPU, and ONNX Runtime's CPU provider (from
`mpliver export`, if onnxruntime is installed), with the accuracy of each against eager fp32: the largest
logit and probability differences and the share of liver voxels whose label changes. The parity tests'
tolerance is 1e-4 on the logits (`inference.export.TOLERANCE`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

TYPES = ("HCC", "METS", "cyst", "FNH", "HEM")


def dataset(work: Path, n: int, shape: tuple[int, int, int] = (512, 512, 100),
            distinct: int | None = None) -> Path:
    """Write (once) N phantom studies of `shape` (0.7 x 0.7 x 2.5 mm at 512x512x100, the same field of view
    at other shapes) as a dataset with a folder of liver masks; with `distinct` K < N, study i is a copy of
    study i mod K (a phantom takes a while to generate; a copy costs what a distinct study costs)."""
    from mpliver.data.phantom import PhantomConfig, generate_case
    from mpliver.io.nifti import write_nifti

    root = work / f"dataset_{'x'.join(map(str, shape))}"
    (root / "imagesTs").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "PV", "1": "ART"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "file_ending": ".nii.gz", "numTraining": 0}))
    config = PhantomConfig(shape=shape, spacing=(0.7 * 512 / shape[0], 0.7 * 512 / shape[1], 250 / shape[2]))
    for i in range(n):
        case = f"STUDY{i:03d}"
        files = [root / "imagesTs" / f"{case}_0000.nii.gz", root / "imagesTs" / f"{case}_0001.nii.gz",
                 root / "masks" / f"{case}.nii.gz"]
        if all(f.exists() for f in files):
            continue
        if distinct and i >= distinct:
            source = f"STUDY{i % distinct:03d}"
            for f in files:
                shutil.copy(f.parent / f.name.replace(case, source), f)
            continue
        start = time.perf_counter()
        study = generate_case(i, 7 + i, TYPES[i % len(TYPES)], config)
        write_nifti(files[0], study.phases["PV"].astype(np.int16), study.geometries["PV"])
        write_nifti(files[1], study.phases["ART"].astype(np.int16), study.geometries["ART"])
        write_nifti(files[2], study.label, study.geometries["PV"])
        print(f"{case}: written in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its ended children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def uptime() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _arrays_equal(a: Path, b: Path) -> bool:
    import nibabel as nib

    ia, ib = nib.load(str(a)), nib.load(str(b))
    da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
    return da.dtype == db.dtype and np.array_equal(da, db) and np.array_equal(ia.affine, ib.affine)


def same_outputs(a: Path, b: Path) -> bool:
    """Every file of `a` is in `b` with the same arrays (NIfTI), report (JSON) or text."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    for name in names:
        if name.endswith(".nii.gz"):
            ok = _arrays_equal(a / name, b / name)
        elif name.endswith(".json"):
            ok = json.loads((a / name).read_text()) == json.loads((b / name).read_text())
        else:
            ok = (a / name).read_text() == (b / name).read_text()
        if not ok:
            return False
    return True


def run_batch(bundles, root: Path, out: Path, workers: int, liver: str, device: str,
              max_in_flight: int | None = None) -> dict:
    from mpliver.inference.batch import predict_dataset

    if out.exists():
        shutil.rmtree(out)
    load = uptime()
    cpu = _cpu_seconds()
    summary = predict_dataset(bundles, root, out, liver_mask_dir=root / "masks" if liver == "file" else None,
                              device=device, workers=workers, max_in_flight=max_in_flight)
    if summary.failed:
        raise SystemExit(f"workers={workers}: failed {summary.failed}")
    n = len(summary.done)
    cpu = _cpu_seconds() - cpu  # the preparation processes count once they have ended (after the batch)
    return {"workers": workers, "studies": n, "seconds": round(summary.seconds, 1),
            "studies_per_hour": round(3600 * n / summary.seconds, 1), "cpu_s_per_study": round(cpu / n, 1),
            "mean_stage_s": {k: round(v / n, 2) for k, v in summary.timings.items()},
            "load_before": load, "load_after": uptime()}


@torch.no_grad()
def _logits(model, stacks: np.ndarray, batch: int, bf16: bool) -> np.ndarray:
    """Final logits of every stack, eager PyTorch (optionally under bf16 autocast on the CPU)."""
    out = []
    for s in range(0, len(stacks), batch):
        x = torch.from_numpy(np.ascontiguousarray(stacks[s:s + batch]))
        phases = [p.contiguous(memory_format=torch.channels_last) for p in x.unbind(1)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(model(phases)["logits"].float().numpy())
    return np.concatenate(out)


def _ort_logits(session, names: list[str], stacks: np.ndarray, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(stacks), batch):
        x = np.ascontiguousarray(stacks[s:s + batch])
        feed = {n: np.ascontiguousarray(x[:, i]) for i, n in enumerate(names)}
        out.append(session.run(["logits"], feed)[0])
    return np.concatenate(out)


def _softmax1(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).float(), dim=1)[:, 1].numpy()


def network_options(bundles, root: Path, work: Path, slices: int, batch: int) -> dict:
    """Eager fp32, eager bf16 autocast and ONNX Runtime on the first `slices` stacks of one study."""
    from mpliver.inference.export import TOLERANCE, export_model
    from mpliver.inference.predict import Predictor, predict_settings

    settings = predict_settings(bundles)
    case = "STUDY000"
    phases = {p: root / "imagesTs" / f"{case}_{i:04d}.nii.gz" for i, p in enumerate(bundles[0].phases)}
    prepared = Predictor(settings).prepare_study(phases, case, liver_mask=root / "masks" / f"{case}.nii.gz")
    stacks = prepared.stacks[:slices]
    model = bundles[0].inference_model("tumor", torch.device("cpu"))
    report: dict = {"slices": len(stacks), "batch": batch, "threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "parity_tolerance": TOLERANCE,
                    "load_before": uptime()}
    runs: dict[str, tuple[float, np.ndarray]] = {}
    _logits(model, stacks[:batch], batch, False)  # warm-up (oneDNN primitive caches)
    _logits(model, stacks[:batch], batch, True)
    for name, bf16 in (("eager_fp32", False), ("eager_bf16_autocast", True)):
        start = time.perf_counter()
        logits = _logits(model, stacks, batch, bf16)
        runs[name] = (time.perf_counter() - start, logits)
    try:
        import onnxruntime as ort

        path = work / "tumor.onnx"
        export_model(bundles[0], "onnx", path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [p.lower() for p in bundles[0].phases]
        _ort_logits(session, names, stacks[:batch], batch)
        start = time.perf_counter()
        logits = _ort_logits(session, names, stacks, batch)
        runs["onnxruntime_cpu"] = (time.perf_counter() - start, logits)
        report["onnxruntime"] = ort.__version__
    except ImportError:
        report["onnxruntime"] = "not installed"
    ref_s, ref = runs["eager_fp32"]
    p_ref = _softmax1(ref)
    mask = stacks[:, 0, stacks.shape[2] // 2] > 0  # inside the liver: the network's input is masked
    report["runs"] = {}
    for name, (seconds, logits) in runs.items():
        p = _softmax1(logits)
        diff = float(np.max(np.abs(logits - ref)))
        report["runs"][name] = {
            "seconds": round(seconds, 2), "slices_per_s": round(len(stacks) / seconds, 2),
            "speed_vs_eager_fp32": round(ref_s / seconds, 2), "max_abs_logit_diff": diff,
            "within_parity_tolerance": diff <= TOLERANCE,
            "max_abs_probability_diff": float(np.max(np.abs(p - p_ref))),
            "liver_pixels_label_changed": float(np.mean((p > 0.5)[mask] != (p_ref > 0.5)[mask]))}
    report["load_after"] = uptime()
    return report


def markdown(report: dict) -> str:
    lines = ["| run | workers | studies | seconds | studies/hour | CPU s per study | load before | "
             "load after |", "|---|---|---|---|---|---|---|---|"]
    for key in ("sequential", "pipelined"):
        r = report[key]
        before, after = (" ".join(map(str, r[k])) for k in ("load_before", "load_after"))
        lines.append(f"| {key} | {r['workers']} | {r['studies']} | {r['seconds']} | "
                     f"{r['studies_per_hour']} | {r.get('cpu_s_per_study', '-')} | {before} | {after} |")
    lines.append(f"\nratio pipelined / sequential: **{report['ratio']}**; outputs identical: "
                 f"{report['outputs_identical']}")
    stages = list(report["sequential"]["mean_stage_s"])
    lines += ["", "| mean s per study | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for key in ("sequential", "pipelined"):
        lines.append(f"| {key} | " + " | ".join(str(report[key]["mean_stage_s"][s]) for s in stages) + " |")
    net = report.get("network_options")
    if net:
        lines += ["", f"Network stage, {net['slices']} stacks of one study, batch {net['batch']}, "
                  f"{net['threads']} threads, CPU capability {net['cpu_capability']}, onnxruntime "
                  f"{net['onnxruntime']}, load {net['load_before']} -> {net['load_after']}:", "",
                  "| network | seconds | slices/s | speed vs eager fp32 | max abs logit diff | within 1e-4 | "
                  "max abs p diff | liver pixels with another label |", "|---|---|---|---|---|---|---|---|"]
        for name, r in net["runs"].items():
            within = "yes" if r["within_parity_tolerance"] else "no"
            lines.append(f"| {name} | {r['seconds']} | {r['slices_per_s']} | {r['speed_vs_eager_fp32']} | "
                         f"{r['max_abs_logit_diff']:.2e} | {within} | {r['max_abs_probability_diff']:.2e} | "
                         f"{100 * r['liver_pixels_label_changed']:.3f}% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="the pipelined run's --workers")
    ap.add_argument("--max-in-flight", type=int, default=None)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--liver", choices=("file", "model"), default="file")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--network-options", action="store_true")
    ap.add_argument("--option-slices", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--distinct", type=int, default=None, help="distinct phantoms (default: every study)")
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100), help="smaller for a smoke test")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mpliver_throughput"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from predict_time import bundle as make_bundle
    from predict_time import study as fitting_study

    from mpliver.inference.ensemble import load_ensemble

    root = dataset(args.work, args.studies, tuple(args.shape), args.distinct)
    if args.liver == "model":
        fitting_study(args.work)  # predict_time fits the liver model to its own study, kept under --work
    bundles = load_ensemble(make_bundle(args.work / f"{args.preset}_{args.liver}.mpliver", args.preset,
                                        args.liver == "model", 0.0))
    device = torch.device(args.device)
    bundles[0].inference_model("tumor", device)  # BN folding once, outside both timings
    report: dict = {"studies": args.studies, "shape": list(args.shape), "preset": args.preset,
                    "liver": args.liver, "device": args.device, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    for key, workers in (("sequential", 1), ("pipelined", args.workers)):
        report[key] = run_batch(bundles, root, args.work / f"out_{key}", workers, args.liver, args.device,
                                args.max_in_flight)
        print(json.dumps(report[key]), flush=True)
    per_hour = [report[k]["studies_per_hour"] for k in ("pipelined", "sequential")]
    report["ratio"] = round(per_hour[0] / per_hour[1], 2)
    report["outputs_identical"] = same_outputs(args.work / "out_sequential", args.work / "out_pipelined")
    if args.network_options:
        report["network_options"] = network_options(bundles, root, args.work, args.option_slices,
                                                    args.batch_size)
    print(json.dumps(report))
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.md:
        args.md.write_text(markdown(report) + "\n")


if __name__ == "__main__":
    main()
