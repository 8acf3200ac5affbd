"""Wall time of `mpliver predict` on one 512x512x100 study, stage by stage (issue 7's CPU target: < 60 s).

    .venv/bin/python benchmarks/predict_time.py [--preset default] [--liver file|model] [--tumor-bias B]

The study is a synthetic case at the paper's in-plane grid (512x512, 0.7 mm) with 100 slices of 2.5 mm,
written once under `--work` as NIfTI. The bundle holds an untrained tumour network of the preset (it costs
what a trained one costs); `--tumor-bias B` adds B to its final tumour logit (B = 3 marks the whole liver as
one lesion, the worst case for the lesion table). `--liver file` gives predict the reference liver mask;
`--liver model` uses the bundle's liver model instead, which is first fitted to this study's own liver (a
timing benchmark needs a liver mask of realistic size, since it sets the liver box, the registration mask and
the slices the tumour network sees; an untrained liver model marks the whole volume). The fitted weights are
kept under --work. Prints the per-stage seconds and the total, including writing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def study(work: Path) -> dict[str, Path]:
    """Write (once) the PV, ART and label NIfTI files of a 512x512x100 HCC phantom case (the study that
    `mpliver bench --peer nnunet` also runs)."""
    from mpliver.apps.nnunet_bench import bench_study

    return bench_study(work)


def fit_liver(model: torch.nn.Module, size: int, work: Path, steps: int = 150) -> None:
    """Fit the liver model to the study's own PV liver (whole slices at `size`, as `FromModel` feeds them);
    the weights are cached in `work`. `main` reports the Dice of the mask predict then gets (a sanity
    check)."""
    from mpliver.data.orientation import slice_orientation
    from mpliver.data.slices import context_indices, crop_resize, full_box, window
    from mpliver.io.nifti import read_nifti
    from mpliver.models import segmentation_loss

    cached = work / f"liver_fit_{size}_{sum(p.numel() for p in model.parameters())}.pt"
    if cached.exists():
        model.load_state_dict(torch.load(cached))
        return
    pv, geom = read_nifti(work / "STUDY_PV.nii.gz", dtype=np.float32)
    label, _ = read_nifti(work / "STUDY_label.nii.gz")
    orient = slice_orientation(geom)
    box = full_box(orient.to_slices(pv).shape[1:], orient.plane_spacing(geom))
    images = crop_resize(window(orient.to_slices(pv)), box, size, "linear")
    target = crop_resize((orient.to_slices(label) >= 1).astype(np.float32), box, size, "nearest") > 0.5
    stacks = images[context_indices(np.arange(len(images)), len(images), 1)]
    x, y = torch.from_numpy(np.ascontiguousarray(stacks)), torch.from_numpy(target).long()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        batch = torch.randint(0, len(x), (8,), generator=gen)
        opt.zero_grad()
        segmentation_loss(model([x[batch]]), y[batch]).backward()
        opt.step()
    torch.save(model.state_dict(), cached)
    seconds = time.perf_counter() - start
    print(f"liver model fitted to the study in {seconds:.0f} s ({steps} steps)", flush=True)


def bundle(path: Path, preset: str, liver: bool, tumor_bias: float) -> Path:
    """An untrained bundle of `preset`'s model and pre-processing (and liver model)."""
    from mpliver.data.config import PreprocessConfig
    from mpliver.inference.bundle import LiverStage, save_bundle
    from mpliver.models import create_model
    from mpliver.training.config import load_config, load_task_config

    cfg = load_config(preset)
    torch.manual_seed(0)
    model = create_model(cfg.model.name, **cfg.model.overrides).eval()
    if tumor_bias:  # the last two-class conv is the final classifier (URIM's, or the network's)
        bias = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 2][-1].bias
        with torch.no_grad():
            bias[1] += tumor_bias
    stage = None
    if liver:
        lcfg = load_task_config(preset, "liver")
        liver_model = create_model(lcfg.model.name, **lcfg.model.overrides)
        fit_liver(liver_model, lcfg.data.preprocess.input_size, path.parent)
        stage = LiverStage(liver_model.eval(), lcfg.data.preprocess.input_size)
    pre = PreprocessConfig(input_size=cfg.data.preprocess.input_size, crop=cfg.data.preprocess.crop,
                           registration="liver",
                           liver_mask_source="model" if liver else "file",
                           liver_mask_pattern=None if liver else "(given to predict)")
    return save_bundle(path, model, ["PV", "ART"], pre, {"synthetic": True}, stage)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--liver", choices=("file", "model"), default="file")
    ap.add_argument("--tumor-bias", type=float, default=0.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mpliver_predict_time"))
    ap.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = ap.parse_args()

    from mpliver.inference.predict import predict, write_outputs
    from mpliver.io.nifti import read_nifti

    files = study(args.work)
    bpath = bundle(args.work / f"{args.preset}_{args.liver}.mpliver", args.preset, args.liver == "model",
                   args.tumor_bias)
    start = time.perf_counter()
    result = predict(bpath, {"PV": files["PV"], "ART": files["ART"]}, case_id="STUDY", device=args.device,
                     batch_size=args.batch_size, liver_mask=files["label"] if args.liver == "file" else None)
    write_outputs(result, args.work / "out")
    total = time.perf_counter() - start
    row = {k: round(v, 2) for k, v in result.timings.items()}
    report = {"preset": args.preset, "liver": args.liver, "tumor_bias": args.tumor_bias,
              "device": args.device,
              "threads": torch.get_num_threads(), "shape": list(result.label.shape),
              "lesions": len(result.lesions), "timings_s": row, "total_s": round(total, 2)}
    label = read_nifti(files["label"])[0] >= 1
    report["liver_dice_vs_reference"] = round(float(2 * (result.liver & label).sum()
                                                    / (result.liver.sum() + label.sum())), 4)
    report["tumor_network_slices"] = int(np.count_nonzero(result.liver.any(axis=(0, 1))))
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
