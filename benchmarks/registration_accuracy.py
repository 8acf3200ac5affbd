"""Registration accuracy on the synthetic cohort: error of the estimated ART motion against the generator's
true motion (mean displacement error over the PV liver voxels, mm), per method, with the median over cases.

    .venv/bin/python benchmarks/registration_accuracy.py --cases 20
    .venv/bin/python benchmarks/registration_accuracy.py --cohort path/to/phantom_dataset

With 'none' the error is the length of the generator's motion. 'tumor-center' uses the labels (the paper's
method, training/evaluation parity only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mpliver.data.registration import register_phase
from mpliver.io.layout import Dataset

METHODS = ("none", "liver", "tumor-center")


def _cases_from_generator(num_cases: int, seed: int):
    from mpliver.data.phantom import PhantomConfig, cohort_types, generate_case

    config = PhantomConfig()
    for index, ttype in enumerate(cohort_types(num_cases, seed)):
        c = generate_case(index, seed, ttype, config)
        yield (c.case_id, c.phases["PV"], c.geometries["PV"], c.phases["ART"], c.geometries["ART"], c.label,
               c.art_label, np.asarray(c.motion_mm, float))


def _cases_from_cohort(root: str):
    ds = Dataset(root)
    for case in ds.cases("Tr"):
        v = ds.load_case(case, with_phase_labels=True)
        motion = np.asarray(ds.case_table[case]["motion_mm"], float)
        yield (case, v.phases["PV"], v.geometries["PV"], v.phases["ART"], v.geometries["ART"], v.label,
               v.phase_labels.get("ART"), motion)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20, help="cases generated in memory (ignored with --cohort)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cohort", help="a written phantom dataset (dataset.json holds motion_mm per case)")
    args = ap.parse_args()
    source = _cases_from_cohort(args.cohort) if args.cohort else _cases_from_generator(args.cases, args.seed)
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    print(f"{'case':<14}{'|motion|':>9}" + "".join(f"{m:>14}" for m in METHODS) + "   liver s (cpu)")
    for case, pv, g_pv, art, g_art, label, art_label, motion in source:
        liver = label >= 1
        pts = g_pv.index_to_world(np.argwhere(liver))
        row = f"{case:<14}{np.linalg.norm(motion):9.2f}"
        for m in METHODS:
            t0 = time.process_time()
            _, tx = register_phase(m, pv, g_pv, art, g_art, liver_mask=liver, pv_label=label,
                                   moving_label=art_label)
            seconds[m].append(time.process_time() - t0)
            err = float(np.linalg.norm(tx.displacement(pts) - motion, axis=1).mean())
            errors[m].append(err)
            row += f"{err:14.3f}"
        print(row + f"   {seconds['liver'][-1]:.2f}", flush=True)
    print(f"median error (mm) over {len(errors['none'])} cases: "
          + ", ".join(f"{m} {np.median(errors[m]):.3f}" for m in METHODS))
    print("max error (mm): " + ", ".join(f"{m} {np.max(errors[m]):.3f}" for m in METHODS))
    print("median CPU time per case (s, incl. resampling): "
          + ", ".join(f"{m} {np.median(seconds[m]):.2f}" for m in METHODS))


if __name__ == "__main__":
    main()
