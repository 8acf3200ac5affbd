"""Score the LiTS 117 crop at assumed voxel sizes: its spacing was lost (nominal 1 mm) and its anatomy says
about 1.2 mm in-plane and 1.5-1.7 mm along z (docs/results.md, "The crop's voxel size"). Prints the liver
Dice, the tumour Dice end to end and with the reference liver, and the volume ratio, per bundle and size.

    python benchmarks/lits_spacing.py BUNDLE [BUNDLE ...] --mm 1.0,1.5 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from real_ct import lits117  # the crop and its orientation (benchmarks/ is on sys.path)


def main() -> None:
    from mpliver.evaluation.metrics import dice
    from mpliver.inference.bundle import load_bundle
    from mpliver.inference.predict import predict
    from mpliver.io.geometry import Geometry

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--mm", default="1.0,1.5", help="isotropic voxel sizes to assume, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ct, label, geom = lits117()
    reference = (label >= 1).astype(np.uint8)
    tumour_voxels = int((label == 2).sum())
    out = {}
    for path in args.bundles:
        bundle = load_bundle(path)
        for mm in (float(v) for v in args.mm.split(",")):
            affine = geom.affine.copy()
            affine[:3, :3] *= mm
            g = Geometry(affine, geom.shape)
            phases = {bundle.phases[0]: (ct, g)}
            own = predict(bundle, phases, device="cpu")
            given = predict(bundle, phases, device="cpu", liver_mask=(reference, g))
            row = {"liver Dice": dice(own.label >= 1, label >= 1),
                   "tumour Dice": dice(own.label == 2, label == 2),
                   "tumour Dice, ref. liver": dice(given.label == 2, label == 2),
                   "tumour vol. pred/ref, ref. liver": float((given.label == 2).sum()) / tumour_voxels}
            out[f"{path} @ {mm} mm"] = row
            print(f"{path} @ {mm} mm: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
