"""Tumour false positives of two-phase models on a real liver without tumour (issue 13).

There is no real multi-phase CT in ../shared/data. This benchmark makes the nearest thing: real anatomy in two
phases. The real portal-venous series of the TotalSegmentator example (20 slices, its liver holds no tumour)
is the PV phase. A second phase is made from it: each TotalSegmentator structure is moved by the phantom's
own contrast kinetics, i.e. the difference between the two phases' HU in one drawn case
(`mpliver.data.phantom.enhancement.sample_hu_table`). The step is softened over about a voxel, and fresh
noise is added, so the two phases do not share one noise pattern. So it is a hybrid, not a real arterial
phase:
- the intrahepatic vessels move with the liver;
- structures that TotalSegmentator does not label (fat, bowel wall, bone) stay as they are.

Every tumour voxel a model marks is a false positive. The figures are averaged over several drawn second
phases:
- with the reference liver mask given: the tumour marked, in % of the liver's volume (mean and max);
- end to end, with the bundle's own liver model: the tumour marked inside the liver (% of its volume) and
  outside it (mL).

    python benchmarks/healthy_two_phase.py MODEL.mpliver [MODEL2.mpliver ...] [--phase ART] [--draws 4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from real_ct import SHARED
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
# TotalSegmentator (v2) label values in pv_dicom_seg.nii.gz -> the phantom structure whose curve moves them
TS_STRUCTURES = {1: "spleen", 5: "liver", 6: "stomach_wall", 52: "aorta", 63: "ivc", 64: "portal_vein",
                 86: "muscle", 87: "muscle"}
NOISE_HU = 10.0  # the added noise of the made phase (the real PV series: about 11 HU)


def made_phase(pv: np.ndarray, seg: np.ndarray, phase: str, seed: int) -> tuple[np.ndarray, dict]:
    """(the second phase made from the real PV by one drawn case's kinetics, the per-structure HU step)."""
    from mpliver.data.phantom.enhancement import sample_hu_table

    rng = np.random.default_rng([seed, 13])
    table = sample_hu_table(rng, ("PV", phase))
    step = np.zeros(pv.shape, np.float32)
    moved = {}
    for value, name in TS_STRUCTURES.items():
        delta = float(table[phase][name] - table["PV"][name])
        step[seg == value] = delta
        moved[name] = round(delta, 1)
    step = ndimage.gaussian_filter(step, sigma=(0.8, 0.8, 0.4))  # partial volume at the boundaries
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, pv.shape), sigma=(0.6, 0.6, 0.0))
    noise *= NOISE_HU / noise.std()
    return (pv + step + noise).astype(np.float32), moved


def score(bundle_path: Path, phase: str, draws: int) -> dict[str, float]:
    """Tumour marked on the tumour-free liver with the reference liver mask and end to end (module doc)."""
    from mpliver.inference.bundle import load_bundle
    from mpliver.inference.predict import liver_mask_on_grid, predict
    from mpliver.inference.study import read_volume

    bundle = load_bundle(bundle_path)
    if len(bundle.phases) < 2 or bundle.phases[1] != phase:
        raise SystemExit(f"{bundle_path}: phases {bundle.phases}; this benchmark makes PV + {phase}")
    ts = SHARED / "totalseg_example"
    pv, geom, _ = read_volume(ts / "pv_dicom", "TS PV series")
    labels = read_volume(ts / "pv_dicom_seg.nii.gz", "TS PV labels")  # read once, placed per structure
    seg = np.zeros(pv.shape, np.int16)
    for value in TS_STRUCTURES:
        seg[liver_mask_on_grid((labels[0], labels[1]), geom, (value,))] = value
    liver = seg == 5
    ml = float(np.prod(geom.spacing)) / 1000.0
    given, own_in, own_out = [], [], []
    for d in range(draws):
        second, _ = made_phase(pv, seg, phase, d)
        phases = {bundle.phases[0]: (pv, geom), phase: (second, geom)}
        result = predict(bundle, phases, device="cpu", liver_mask=(liver.astype(np.uint8), geom))
        given.append(100.0 * float((result.label == 2).sum()) / float(liver.sum()))
        if bundle.liver is None:
            continue
        own = predict(bundle, phases, device="cpu").label == 2  # end to end: the bundle's liver model
        own_in.append(100.0 * float((own & liver).sum()) / float(liver.sum()))
        own_out.append(float((own & ~liver).sum()) * ml)
    nan = float("nan")  # a bundle without a liver model has no end-to-end figures
    return {"FP % of liver, ref. liver (mean)": float(np.mean(given)),
            "FP % of liver, ref. liver (max)": float(np.max(given)),
            "FP % of liver, own liver (mean)": float(np.mean(own_in)) if own_in else nan,
            "FP mL outside the liver, own liver (mean)": float(np.mean(own_out)) if own_out else nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--phase", default="ART", help="the second phase to make (the bundles' second phase)")
    parser.add_argument("--draws", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    for bundle in args.bundles:
        figures = score(bundle, args.phase, args.draws)
        print(f"{bundle}: {json.dumps({k: round(v, 2) for k, v in figures.items()})}", flush=True)


if __name__ == "__main__":
    main()
