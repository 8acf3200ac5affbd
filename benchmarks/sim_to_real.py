"""Sim-to-real benchmark (issue 13 item 5): train on the synthetic cohort only, score the real labelled CT.

For each variant, a liver model (liver_resunet) and a single-phase tumour model are trained on a phantom
cohort (all cases, no held-out fold) and bundled; then every real labelled CT in ../shared/data is scored
with the current code:
- TotalSegmentator portal-venous DICOM series (label 5 = liver): liver Dice of the liver model;
- TotalSegmentator unenhanced CT (label 5): liver Dice of the liver model;
- LiTS case 117 crop (labels 1 liver, 2 tumour; its orientation read off the anatomy, real_ct.py; 1 mm
  nominal spacing): liver Dice, tumour Dice of the single-phase model end to end (its own liver mask) and
  with the reference liver mask, with predicted / reference tumour volume;
- the two TotalSegmentator livers, which hold no tumour: the tumour the single-phase model marks inside the
  reference liver, in percent of the liver's volume (false positives on real parenchyma).

Variants:
- `before`: the phantom and recipe before issue 13 (default cohort, cpu-small, no intensity augmentation),
  trained by the source tree given with --before-src (e.g. `git archive 4c17972 src | tar -x -C DIR`);
- `after`: `mpliver phantom --randomize` (kinetics + domain randomisation, with the diaphragm muscle on the
  liver) and `data.intensity_aug=true`; the liver model trains with plain CE (the liver task's default).
- `after-long`: `after`'s cohort and liver model, the tumour model trained longer and with a quarter tumour
  slices (TUMOR_RECIPES);
- `after-faint`: `after-long` with lesions the PV phase does not show left out of the loss.
- `after-spread`: `after-faint` on a cohort with multifocal cases and lesions at the liver surface
  (COHORT_FLAGS), with `after`'s liver model.
- `liver-4phase`, `liver-anyphase`: `after-faint`'s tumour model with a liver model trained on a randomised
  PV, NC, ART, EQP cohort, reading the primary (PV) phase or a phase drawn per slice (LIVER_RECIPES).
Every variant a run names is scored by the current code (its models are reused when trained), so a fix in
scoring (the LiTS crop's orientation) shows once the run is repeated; scores.json keeps the variants of
earlier runs in the same folder as they were scored then.
Budgets are CPU-sized by default; finished steps are reused. Usage:

    python benchmarks/sim_to_real.py --out bench_s2r [--before-src DIR] [--cases 24] [--liver-epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from real_ct import SHARED, lits117  # the real CT and their quirks (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], src: Path, log: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_WAIT_POLICY="PASSIVE")
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run([sys.executable, "-m", "mpliver", *cmd], env=env, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"step failed (exit {proc.returncode}): mpliver {' '.join(cmd)}; see {log}")


# Variants that share `after`'s cohort and liver model and train the tumour model differently: `after-long`
# takes the calibration benchmark's best single-phase choice (a quarter of the slices with tumour) and three
# times the tumour budget (24 epochs of 256 slices, the learning rate cut at epoch 18).
# `after-faint` is `after-long` with the lesions that the PV phase does not show (|CNR| < 0.5, mostly FNH and
# iso-attenuating HCC) left out of the loss (data.faint_lesion_cnr).
LONG = ["data.tumor_share=0.25", "optim.epochs=24", "data.slices_per_epoch=256", "optim.step_epochs=18"]
FAINT = [*LONG, "data.faint_lesion_cnr=0.5"]
# `after-ema` is `after-faint` with a moving average of the weights (train.ema=0.99, about 100 of its 768
# steps): the tumour runs' validation Dice jumps from epoch to epoch, and so does the checkpoint it picks.
# `after-spread` is `after-faint` on a cohort of the same seed with the lesion spread of docs/phantom.md (a
# quarter of the METS, HCC and cyst cases multifocal with 6-20 lesions, 30 % of the lesions reaching the liver
# surface), bundled with `after`'s liver model, so that only the tumour model differs from `after-faint`.
TUMOR_RECIPES = {"after-long": LONG, "after-faint": FAINT, "after-ema": [*FAINT, "train.ema=0.99"],
                 "after-spread": FAINT}
COHORT_FLAGS = {"after-spread": ["--multifocal", "0.25", "--subcapsular", "0.3"]}
# Variants that change the liver model only and bundle it with `after-faint`'s tumour model: a randomised
# cohort with four phases (the primary PV, then NC, ART and EQP; same seed and case count), the liver model
# reading the primary phase (`liver-4phase`, the control) or a phase drawn per slice (`liver-anyphase`,
# data.liver_phase=any), so that it meets unenhanced, arterial and late livers as well.
FOUR_PHASES = "PV,NC,ART,EQP"
LIVER_RECIPES = {"liver-4phase": [], "liver-anyphase": ["data.liver_phase=any"]}


def build_variant(name: str, out: Path, src: Path, args: argparse.Namespace) -> Path:
    """Cohort -> liver model -> single-phase tumour model -> bundle, each step skipped when done."""
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    log = d / "log.txt"
    if name in LIVER_RECIPES:
        return _build_liver_variant(name, d, out, src, args)
    recipe = TUMOR_RECIPES.get(name, [])
    base = out / "after" if name in TUMOR_RECIPES else d
    if name in TUMOR_RECIPES:
        build_variant("after", out, src, args)
    cohort, liver, tumour, bundle = base / "cohort", base / "liver", d / "tumor", d / "model.mpliver"
    if name in COHORT_FLAGS:  # its own cohort; `after`'s liver model
        cohort = d / "cohort"
    after = name == "after" or name in TUMOR_RECIPES
    if not (cohort / "dataset.json").exists():
        cmd = ["phantom", str(cohort), "--cases", str(args.cases), "--seed", str(args.seed), "--no-previews",
               "--folds", "2", "--overwrite"]
        _run(cmd + (["--randomize"] if after else []) + COHORT_FLAGS.get(name, []), src, log)
    aug = ["data.intensity_aug=true"] if after else []
    _train_liver(cohort, liver, aug, src, log, args)
    if not (tumour / "done").exists():  # --resume: a killed run goes on from its last checkpoint
        _run(["train", str(cohort), "--preset", "cpu-small", "--fold", "none", "--out", str(tumour),
              "--resume", "model.name=single_phase", "model.urim=false", f"optim.epochs={args.tumor_epochs}",
              "data.val_fraction=0.1", "train.progress=false", *aug, *recipe], src, log)
        (tumour / "done").touch()
    if not bundle.exists():
        _run(["bundle", str(tumour), "--liver-run", str(liver), "--out", str(bundle)], ROOT / "src", log)
    return bundle


def _train_liver(cohort: Path, liver: Path, recipe: list[str], src: Path, log: Path,
                 args: argparse.Namespace) -> None:
    """The liver model of a variant (skipped when done): cpu-small at the liver budget, plus `recipe`; the
    LR step is cpu-small's (every 6 epochs) unless --liver-step-epochs is given."""
    if (liver / "done").exists():
        return
    step = [] if args.liver_step_epochs is None else [f"optim.step_epochs={args.liver_step_epochs}"]
    _run(["train", str(cohort), "--preset", "cpu-small", "--task", "liver", "--fold", "none", "--out",
          str(liver), "--resume", f"optim.epochs={args.liver_epochs}",
          f"data.slices_per_epoch={args.liver_slices}",
          "data.val_fraction=0.1", "train.progress=false", *recipe, *step], src, log)
    (liver / "done").touch()


def _build_liver_variant(name: str, d: Path, out: Path, src: Path, args: argparse.Namespace) -> Path:
    """Four-phase cohort -> liver model (LIVER_RECIPES) -> bundle with `after-faint`'s tumour model."""
    build_variant("after-faint", out, src, args)
    log, cohort, liver, bundle = d / "log.txt", d.parent / "cohort-4phase", d / "liver", d / "model.mpliver"
    if not (cohort / "dataset.json").exists():
        _run(["phantom", str(cohort), "--cases", str(args.cases), "--seed", str(args.seed), "--no-previews",
              "--folds", "2", "--overwrite", "--randomize", "--phases", FOUR_PHASES], src, log)
    _train_liver(cohort, liver, ["data.intensity_aug=true", *LIVER_RECIPES[name]], src, log, args)
    if not bundle.exists():
        _run(["bundle", str(out / "after-faint" / "tumor"), "--liver-run", str(liver), "--out", str(bundle)],
             ROOT / "src", log)
    return bundle


def score(bundle_path: Path) -> dict[str, float]:
    """Liver and tumour figures of one bundle on the real CT (percent)."""
    from mpliver.evaluation.metrics import dice  # the project's Dice (%), as in the tables
    from mpliver.inference.bundle import load_bundle
    from mpliver.inference.predict import liver_mask_on_grid, predict

    bundle = load_bundle(bundle_path)
    out: dict[str, float] = {}
    ts = SHARED / "totalseg_example"
    healthy = {}
    for name, image, seg in (("TS PV", ts / "pv_dicom", ts / "pv_dicom_seg.nii.gz"),
                             ("TS unenhanced", ts / "unenhanced_ct_small.nii.gz",
                              ts / "unenhanced_seg_small.nii.gz")):
        result = predict(bundle, {bundle.phases[0]: image}, device="cpu")
        reference = liver_mask_on_grid(seg, result.geometry, (5,))
        out[f"{name} liver Dice"] = dice(result.label >= 1, reference)
        given = predict(bundle, {bundle.phases[0]: image}, device="cpu",
                        liver_mask=(reference.astype(np.uint8), result.geometry))
        healthy[f"{name} tumour FP % of liver, ref. liver"] = 100.0 * float((given.label == 2).sum()) / max(
            1, int(reference.sum()))
    ct, label, geom = lits117()  # the crop's orientation, read off its anatomy (real_ct.py)
    phases = {bundle.phases[0]: (ct, geom)}
    result = predict(bundle, phases, device="cpu")
    out["LiTS liver Dice"] = dice(result.label >= 1, label >= 1)
    out["LiTS tumour Dice"] = dice(result.label == 2, label == 2)
    out["LiTS tumour vol. pred/ref"] = float((result.label == 2).sum()) / max(1, int((label == 2).sum()))
    given = predict(bundle, phases, device="cpu", liver_mask=((label >= 1).astype(np.uint8), geom))
    out["LiTS tumour Dice, ref. liver"] = dice(given.label == 2, label == 2)
    ref_volume = max(1, int((label == 2).sum()))
    out["LiTS tumour vol. pred/ref, ref. liver"] = float((given.label == 2).sum()) / ref_volume
    return {**out, **healthy}


def table(scores: dict[str, dict[str, float]]) -> str:
    names = list(scores)
    rows = list(dict.fromkeys(row for v in scores.values() for row in v))
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in rows:
        unit = "" if "vol." in row else " %"
        cells = ["—" if row not in scores[n] else f"{scores[n][row]:.2f}" if "vol." in row
                 else f"{scores[n][row]:.1f}{unit}" for n in names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(folders: list[Path]) -> str:
    """Mean ± SD over runs (one folder per cohort seed, each with its scores.json) of every figure, for the
    variants that every run scored."""
    runs = [json.loads((f / "scores.json").read_text()) for f in folders]
    names = [n for n in runs[0] if all(n in r for r in runs)]
    rows = list(dict.fromkeys(row for r in runs for n in names for row in r[n]))  # rows added later last
    lines = [f"Mean ± SD over {len(runs)} runs (cohort seeds), one model per run and variant.", "",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        cells = []
        for n in names:
            if not all(row in r[n] for r in runs):  # scored before the row existed
                cells.append("—")
                continue
            v = np.array([r[n][row] for r in runs], dtype=np.float64)
            digits, unit = (2, "") if "vol." in row else (1, " %")
            cells.append(f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}{unit}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(folders: list[Path], base: str) -> str:
    """Per figure, each variant minus `base` over the runs that scored both: mean ± SD of the difference, the
    runs where it is positive, the per-run differences and the Wilcoxon signed-rank p over runs."""
    from scipy.stats import wilcoxon

    runs = [json.loads((f / "scores.json").read_text()) for f in folders]
    runs = [r for r in runs if base in r]
    names = [n for n in dict.fromkeys(n for r in runs for n in r) if n != base and all(n in r for r in runs)]
    lines = [f"Paired differences against `{base}` over {len(runs)} runs (cohort seeds).", "",
             "| figure | variant | mean ± SD | higher in | per run | Wilcoxon p |",
             "|---|---|---:|---:|---|---:|"]
    for n in names:
        for row in runs[0][base]:
            if not all(row in r[n] and row in r[base] for r in runs):
                continue
            d = np.array([r[n][row] - r[base][row] for r in runs], dtype=np.float64)
            p = wilcoxon(d).pvalue if len(d) > 1 and np.any(d != 0) else float("nan")
            digits = 2 if "vol." in row else 1
            sd = d.std(ddof=1) if len(d) > 1 else 0.0
            lines.append(f"| {row} | {n} | {d.mean():+.{digits}f} ± {sd:.{digits}f} "
                         f"| {int((d > 0).sum())} of {len(d)} | {', '.join(f'{v:+.{digits}f}' for v in d)} "
                         f"| {p:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_sim_to_real"))
    parser.add_argument("--before-src", type=Path, default=None,
                        help="src/ of the project before issue 13 (the before column is skipped without it)")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--liver-epochs", type=int, default=6)
    parser.add_argument("--liver-slices", type=int, default=256)
    parser.add_argument("--liver-step-epochs", type=int, default=None,
                        help="the liver run's LR step (default: cpu-small's 6; /10 at each step)")
    parser.add_argument("--tumor-epochs", type=int, default=8)
    parser.add_argument("--variants", default="before,after",
                        help=f"comma-separated: before, after, {', '.join([*TUMOR_RECIPES, *LIVER_RECIPES])}")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None,
                        help="print mean ± SD over these finished runs (their scores.json) instead")
    parser.add_argument("--paired", default=None, metavar="BASE",
                        help="with --summarize: also each variant minus BASE, per run, with a Wilcoxon test")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        if args.paired:
            print("\n" + paired(args.summarize, args.paired))
        return
    sys.path.insert(0, str(ROOT / "src"))
    started = time.perf_counter()
    saved = args.out / "scores.json"  # every variant scored in this folder so far, by any run
    scores: dict[str, dict[str, float]] = json.loads(saved.read_text()) if saved.is_file() else {}
    for name in args.variants.split(","):
        if name == "before" and args.before_src is None:
            print("before: skipped (no --before-src)")
            continue
        src = args.before_src if name == "before" else ROOT / "src"
        bundle = build_variant(name, args.out, Path(src).resolve(), args)
        scores[name] = score(bundle)
        print(f"{name}: {json.dumps({k: round(v, 2) for k, v in scores[name].items()})}", flush=True)
    text = table(scores)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    saved.write_text(json.dumps(scores, indent=1) + "\n")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
