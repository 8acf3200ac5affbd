"""Where a bundle's liver model errs on the real CT in ../shared/data, and what post-processing would change.

    python benchmarks/liver_errors.py BUNDLE [--out scores.json]

For the TotalSegmentator portal-venous series, its unenhanced CT and the LiTS 117 crop (read as
`sim_to_real.py` reads them), the liver model's probability is computed once and scored as the product scores
it (p > 0.5, the largest 3-D component), and with each alternative: holes filled, the probability averaged
over 3 slices along the axial axis, a left-right flip averaged in (test-time augmentation), other thresholds,
and, for the LiTS crop only, a floor on the slice's field of view (the crop shows a 128 mm field, a quarter
of the area of the phantom's). Then where the errors lie: how deep the missed voxels lie inside the
reference, how far the false positives lie outside it (in voxels), and their median HU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from real_ct import SHARED, lits117  # the crop read with its orientation (one home for its quirks)
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mpliver.data import liver_mask as lm  # noqa: E402
from mpliver.evaluation.metrics import dice  # noqa: E402
from mpliver.inference.bundle import load_bundle  # noqa: E402
from mpliver.inference.study import liver_mask_on_grid, read_volume  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.6, 0.7)
FOV_FLOORS_MM = (200.0, 250.0, 300.0)


def real_cts() -> dict[str, tuple[np.ndarray, object, np.ndarray]]:
    """name -> (HU volume, Geometry, reference liver mask) for the three labelled real CTs."""
    ts = SHARED / "totalseg_example"
    out = {}
    for name, image, seg in (("TS PV", ts / "pv_dicom", ts / "pv_dicom_seg.nii.gz"),
                             ("TS unenhanced", ts / "unenhanced_ct_small.nii.gz",
                              ts / "unenhanced_seg_small.nii.gz")):
        volume, geom, _ = read_volume(image, name)
        out[name] = (volume.astype(np.float32), geom, liver_mask_on_grid(seg, geom, (5,)).astype(bool))
    ct, label, geom = lits117()
    out["LiTS"] = (ct, geom, label >= 1)
    return out


class Flipped(torch.nn.Module):
    """The liver network on left-right flipped slices, its output flipped back (test-time augmentation)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        x = [torch.flip(t, dims=[-1]) for t in x] if isinstance(x, list) else torch.flip(x, dims=[-1])
        out = self.net(x)
        logits = out["logits"] if isinstance(out, dict) else out
        return torch.flip(logits, dims=[-1])


def mask(p: np.ndarray, threshold: float = 0.5, fill: bool = False) -> np.ndarray:
    m = p > threshold
    m = lm.largest_component(m) if m.any() else m
    return ndimage.binary_fill_holes(m) if fill else m


def errors(m: np.ndarray, ref: np.ndarray, volume: np.ndarray) -> dict[str, float]:
    fn, fp = ref & ~m, m & ~ref
    depth = ndimage.distance_transform_edt(ref)
    away = ndimage.distance_transform_edt(~ref)
    med = lambda a: float(np.median(a)) if a.size else float("nan")  # noqa: E731
    return {"missed voxels": float(fn.sum()), "false voxels": float(fp.sum()),
            "reference voxels": float(ref.sum()),
            "missed depth median (vox)": med(depth[fn]), "false distance median (vox)": med(away[fp]),
            "false distance p90 (vox)": float(np.percentile(away[fp], 90)) if fp.any() else float("nan"),
            "liver HU median": med(volume[ref]), "missed HU median": med(volume[fn]),
            "false HU median": med(volume[fp])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    if bundle.liver is None:
        raise SystemExit(f"{args.bundle}: the bundle has no liver model")
    stage = bundle.liver
    net = bundle.inference_model("liver", torch.device("cpu"))
    source = lm.FromModel(net, stage.input_size, stage.window, stage.context_slices, None)
    flipped = lm.FromModel(Flipped(net), stage.input_size, stage.window, stage.context_slices, None,
                           sequence_input=source.sequence_input)
    report: dict[str, dict[str, float]] = {}
    for name, (volume, geom, ref) in real_cts().items():
        p = source.probability(volume, geom)
        axial = lm.slice_orientation(geom, None).axial_axis
        base = mask(p)
        row = {"Dice": dice(base, ref), "pred/ref volume": float(base.sum() / ref.sum()),
               "Dice, holes filled": dice(mask(p, fill=True), ref),
               "Dice, 3-slice average": dice(mask(ndimage.uniform_filter1d(p, 3, axis=axial)), ref),
               "Dice, flip TTA": dice(mask(0.5 * (p + flipped.probability(volume, geom))), ref)}
        row |= {f"Dice, p > {t}": dice(mask(p, t), ref) for t in THRESHOLDS}
        if name == "LiTS":
            row |= {f"Dice, field of view >= {f:.0f} mm": dice(mask(source.probability(volume, geom, f)), ref)
                    for f in FOV_FLOORS_MM}
        row |= errors(base, ref, volume)
        report[name] = row
        print(f"{name}: " + ", ".join(f"{k} {v:.1f}" if "volume" not in k else f"{k} {v:.2f}"
                                      for k, v in row.items()), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
