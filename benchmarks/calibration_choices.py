"""Calibration choices against over-segmentation (issue 13 item 6), scored by DPC and by volume calibration.

Training choices (each a tumour model, single-phase unless `--model paper`, `cpu-small`, intensity
augmentation on, trained on fold 1 of a randomised 2-fold phantom cohort, so fold 0 is held out):
- `w5_s50`: the `cpu-small` recipe: tumour-class weight 5 in the CE, half of each epoch tumour slices;
- `w1_s50`: plain CE (weight 1);
- `w5_s25`: weight 5, a quarter tumour slices;
- `dicece`: CE + soft Dice (`train.loss=dice_ce`, nnU-Net's loss), weight 1;
- `w5_s50_faint`: `w5_s50` with the lesions that no input phase shows (|CNR| < 0.5) left out of the loss.
Post-processing choices (`mpliver predict --threshold --hysteresis --min-lesion-ml`), applied to the same
probability maps: p > 0.5 (the paper's), p > 0.7, hysteresis 0.5/0.9, lesions >= 0.5 mL, and both.

Every prediction uses the reference liver mask, so only the tumour calibration is compared: the held-out
phantom cases (mean DPC over cases with tumour, pooled DG, mean RVD, pooled predicted / reference volume) and
the real LiTS 117 crop in ../shared/data (Dice and predicted / reference volume). Finished steps are reused.

    python benchmarks/calibration_choices.py --out OUT [--cases 32] [--epochs 16] [--slices 256] [--seed S]
    python benchmarks/calibration_choices.py --summarize OUT_SEED0 OUT_SEED1 ...   # mean ± SD over runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from real_ct import LITS117_AXCODES, lits117  # the real LiTS crop with its orientation
from sim_to_real import _run as run_step  # the same step runner (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
LITS_KEY = "lits117_axcodes"  # beside the LiTS map in a probability file: the crop's orientation it used
TRAINING = {
    "w5_s50": [],
    "w1_s50": ["train.fg_weight=1"],
    "w5_s25": ["data.tumor_share=0.25"],
    "dicece": ["train.fg_weight=1", "train.loss=dice_ce"],
    "w5_s50_faint": ["data.faint_lesion_cnr=0.5"],
}


def _run(cmd: list[str], log: Path) -> None:
    run_step(cmd, ROOT / "src", log)  # sim_to_real's: `python -m mpliver CMD` logged, one line on failure


def build(out: Path, name: str, args: argparse.Namespace) -> Path:
    """Cohort (shared) -> one tumour model of training choice `name` -> its bundle; done steps reused."""
    cohort, run, bundle, log = out / "cohort", out / name, out / f"{name}.mpliver", out / "log.txt"
    if not (cohort / "dataset.json").exists():
        _run(["phantom", str(cohort), "--cases", str(args.cases), "--seed", str(args.seed), "--folds", "2",
              "--randomize", "--no-previews", "--overwrite"], log)
    if not (run / "done").exists():
        _run(["train", str(cohort), "--preset", "cpu-small", "--fold", "0", "--out", str(run),
              f"model.name={args.model}", "model.urim=false", "data.intensity_aug=true",
              f"optim.epochs={args.epochs}", f"data.slices_per_epoch={args.slices}", "data.val_fraction=0.1",
              "train.progress=false", *TRAINING[name]], log)
        (run / "done").touch()
    if not bundle.exists():
        _run(["bundle", str(run), "--out", str(bundle)], log)
    return bundle


def probabilities(out: Path, name: str, bundle_path: Path) -> Path:
    """The tumour probability of every held-out phantom case and of the LiTS crop (reference liver). A saved
    file is reused; its LiTS map only while it was computed with today's orientation of the crop."""
    from mpliver.data.dataset import split_cases
    from mpliver.inference.bundle import load_bundle
    from mpliver.inference.predict import Predictor
    from mpliver.io.layout import Dataset

    path = out / f"{name}_prob.npz"
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if "lits117" not in arrays or str(arrays.get(LITS_KEY, "")) == LITS117_AXCODES:
            return path
        del arrays["lits117"]  # computed with another orientation of the crop: only that map is redone
    bundle = load_bundle(bundle_path)
    if not arrays:
        predictor = Predictor.from_bundle(bundle, device="cpu")
        dataset = Dataset(out / "cohort")
        for case in split_cases(dataset, 0)[2]:
            phases = {p: dataset.image_path(case, i) for i, p in enumerate(bundle.phases)}
            result = predictor.predict(phases, liver_mask=dataset.label_path(case), liver_mask_values=(1, 2),
                                       case_id=case)
            arrays[case] = result.probability.astype(np.float16)
    if len(bundle.phases) == 1:  # the LiTS crop has one phase: only the single-phase model scores it
        ct, label, geom = lits117()  # the crop's orientation, read off its anatomy (real_ct.py)
        lits = Predictor.from_bundle(bundle, device="cpu")
        result = lits.predict({bundle.phases[0]: (ct, geom)},
                              liver_mask=((label >= 1).astype(np.uint8), geom), case_id="lits117")
        arrays["lits117"] = result.probability.astype(np.float16)
        arrays[LITS_KEY] = np.array(LITS117_AXCODES)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


POSTPROCESS = {
    "p>0.5": {},
    "p>0.7": {"threshold": 0.7},
    "hyst 0.9": {"high": 0.9},
    ">=0.5 mL": {"min_volume_ml": 0.5},
    "hyst 0.9 + >=0.5 mL": {"high": 0.9, "min_volume_ml": 0.5},
}


def score(out: Path, prob_path: Path) -> dict[str, dict[str, float]]:
    """{post-processing: figures} of one model's probability maps."""
    from mpliver.evaluation.metrics import dice, rvd
    from mpliver.inference.postprocess import Postprocess, tumor_mask
    from mpliver.io.layout import Dataset
    from mpliver.io.nifti import read_nifti

    dataset = Dataset(out / "cohort")
    refs = {}
    with np.load(prob_path) as z:
        probs = {k: z[k].astype(np.float32) for k in z.files if k != LITS_KEY}
    for case in probs:
        if case == "lits117":
            _, label, geom = lits117()
        else:
            label, geom = read_nifti(dataset.label_path(case))
        refs[case] = (label, geom.spacing)
    table = {}
    for pp_name, kw in POSTPROCESS.items():
        pp = Postprocess(**kw)
        dpc, rvds, inter, n_ref, n_pred = [], [], 0, 0, 0
        row: dict[str, float] = {}
        for case, prob in probs.items():
            label, spacing = refs[case]
            ref, pred = label == 2, tumor_mask(prob, label >= 1, spacing, pp)
            if case == "lits117":
                row["LiTS Dice"] = dice(ref, pred)
                row["LiTS vol pred/ref"] = float(pred.sum()) / max(1, int(ref.sum()))
                continue
            inter += int((ref & pred).sum())
            n_ref, n_pred = n_ref + int(ref.sum()), n_pred + int(pred.sum())
            if ref.any():
                dpc.append(dice(ref, pred))
                rvds.append(rvd(ref, pred))
        row["phantom DPC"] = float(np.nanmean(dpc))
        row["phantom DG"] = 200.0 * inter / max(1, n_ref + n_pred)
        row["phantom RVD"] = float(np.nanmean(rvds))
        row["phantom vol pred/ref"] = n_pred / max(1, n_ref)
        row.setdefault("LiTS Dice", float("nan"))
        row.setdefault("LiTS vol pred/ref", float("nan"))
        table[pp_name] = row
    return table


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = ["phantom DPC", "phantom DG", "phantom RVD", "phantom vol pred/ref", "LiTS Dice",
            "LiTS vol pred/ref"]
    lines = ["| training | post-processing | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, table in results.items():
        for pp_name, row in table.items():
            cells = [f"{row[c]:.2f}" if "vol" in c else f"{row[c]:.1f}" for c in cols]
            lines.append(f"| {name} | {pp_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(folders: list[Path]) -> str:
    """Mean ± SD over runs (one folder per cohort seed, each with its results.json) of every cell, for the
    training choices every run scored."""
    runs = [json.loads((f / "results.json").read_text()) for f in folders]
    cols = ["phantom DPC", "phantom DG", "phantom vol pred/ref", "LiTS Dice", "LiTS vol pred/ref"]
    lines = [f"Mean ± SD over {len(runs)} runs (cohort seeds), one model per run and training choice.", "",
             "| training | post-processing | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    names = [n for n in runs[0] if all(n in run for run in runs)]  # the choices every run scored
    for name in names:
        for pp_name in runs[0][name]:
            cells = []
            for c in cols:
                values = np.array([run[name][pp_name][c] for run in runs], dtype=np.float64)
                digits = 2 if "vol" in c else 1
                cells.append(f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}")
            lines.append(f"| {name} | {pp_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_calibration"))
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--training", default=",".join(TRAINING))
    parser.add_argument("--model", default="single_phase",
                        help="registered model (paper: the two-phase network, scored on the phantom only)")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None,
                        help="print mean ± SD over these finished runs instead of running one")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    sys.path.insert(0, str(ROOT / "src"))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    saved = args.out / "results.json"  # every choice scored in this folder so far, by any run
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    for name in args.training.split(","):
        bundle = build(args.out, name, args)
        results[name] = score(args.out, probabilities(args.out, name, bundle))
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    text = markdown(results)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    saved.write_text(json.dumps(results, indent=1) + "\n")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
