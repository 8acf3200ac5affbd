"""Issue 11's bad inputs (DICOM-SEG, HU plausibility, case table, thin PV) through the command line, for a
before/after table of the messages.

    PYTHONPATH=src python benchmarks/input_checks.py build WORK      # inputs under WORK/in (../shared/data)
    python benchmarks/input_checks.py run WORK SRC OUT.json [2,3,4,5]  # python -m mpliver with PYTHONPATH=SRC
    python benchmarks/input_checks.py table BEFORE.json AFTER.json   # markdown table: rc and message lines

`run` needs no mpliver of its own: it calls the command line of the sources in SRC, so the same inputs can go
through an older checkout (SRC=../main/src) and through this one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MPLIVER_SHARED_DATA", REPO.parent / "shared" / "data"))


def _edit(src: Path, dst: Path, change) -> None:
    import pydicom

    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)


def _one_source(ds) -> None:
    """Every frame names the first frame's source slice, as some exports do."""
    first = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    for fg in ds.PerFrameFunctionalGroupsSequence:
        fg.DerivationImageSequence[0].SourceImageSequence[
            0
        ].ReferencedSOPInstanceUID = first.ReferencedSOPInstanceUID


def _mr_like(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, -1024, 1500)
    m = np.where(a < -500, 0, np.interp(a, [-500, -100, 0, 100, 300, 1500], [100, 900, 300, 600, 450, 80]))
    return np.abs(m + np.random.default_rng(0).normal(0, 15, a.shape)).astype(np.float32)


def build(work: Path) -> None:
    import pydicom

    sys.path.insert(0, str(REPO / "tests"))
    from helpers.predict_toys import tiny_bundle
    from mpliver.cli import main
    from mpliver.data.phantom import PhantomConfig, generate_case
    from mpliver.io.dicom import read_dicom_series, write_dicom_series
    from mpliver.io.dicom_seg import write_dicom_seg
    from mpliver.io.geometry import Geometry
    from mpliver.io.nifti import read_nifti, write_nifti
    from mpliver.io.resample import reorient_to_grid

    out = work / "in"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # item 2: the real PV series with the UIDs an un-anonymised export carries, its clean label, SEG variants
    pv_dir = out / "pv_dicom_uids"
    pv_dir.mkdir()
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for p in sorted((SHARED / "totalseg_example" / "pv_dicom").iterdir()):
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, "TS-EXAMPLE"
        ds.save_as(pv_dir / p.name)
    pv, g = read_dicom_series(pv_dir)
    ts, ts_geom = read_nifti(SHARED / "totalseg_example" / "pv_dicom_seg.nii.gz")
    ts = reorient_to_grid(ts, ts_geom, g)
    label = np.zeros(g.shape, np.uint8)
    label[ts == 5] = 1  # liver
    label[ts == 64] = 2  # the portal vein stands in for a tumour
    write_nifti(out / "pv_label_clean.nii.gz", label, g)
    write_dicom_seg(out / "seg_clean.dcm", label, pv_dir)
    _edit(out / "seg_clean.dcm", out / "seg_one_source.dcm", _one_source)
    _edit(
        out / "seg_clean.dcm",
        out / "seg_other_patient.dcm",
        lambda ds: setattr(ds, "PatientID", "SOMEONE-ELSE"),
    )
    _edit(
        out / "seg_clean.dcm",
        out / "seg_other_for.dcm",
        lambda ds: setattr(ds, "FrameOfReferenceUID", pydicom.uid.generate_uid()),
    )
    _edit(
        out / "seg_clean.dcm",
        out / "seg_other_series.dcm",
        lambda ds: setattr(ds.ReferencedSeriesSequence[0], "SeriesInstanceUID", pydicom.uid.generate_uid()),
    )
    # phantom cases written as DICOM
    config = PhantomConfig(shape=(64, 64, 16), spacing=(5.0, 5.0, 10.0))
    c0, c1 = generate_case(0, 3, "HCC", config), generate_case(1, 3, "cyst", config)
    write_dicom_series(out / "ph_pv", c0.phases["PV"], c0.geometries["PV"], patient_id="PH0")
    write_dicom_series(out / "ph_art", c0.phases["ART"], c0.geometries["ART"], patient_id="PH0")
    write_dicom_series(out / "ph1_pv", c1.phases["PV"], c1.geometries["PV"], patient_id="PH1")
    write_nifti(out / "ph_label.nii.gz", c0.label, c0.geometries["PV"])
    write_dicom_seg(out / "ph_seg_clean.dcm", c0.label, out / "ph_pv")
    _edit(out / "ph_seg_clean.dcm", out / "ph_seg_one_source.dcm", _one_source)
    write_dicom_seg(out / "ph1_seg.dcm", c0.label, out / "ph1_pv")  # made on another patient's series
    # item 3: every real file and a phantom PV, with their bad variants
    vols = {
        "pv": (pv, g),
        "lits": read_nifti(SHARED / "lits117" / "ct.nii.gz", dtype=np.float32),
        "unenh": read_nifti(SHARED / "totalseg_example" / "unenhanced_ct_small.nii.gz", dtype=np.float32),
        "phantom": (c0.phases["PV"].astype(np.float32), c0.geometries["PV"]),
    }
    for name, (a, geo) in vols.items():
        write_nifti(out / f"hu_{name}.nii.gz", a.astype(np.float32), geo)
        write_nifti(out / f"hu_{name}_plus1024.nii.gz", (np.maximum(a, -1024) + 1024).astype(np.int16), geo)
        write_nifti(
            out / f"hu_{name}_8bit.nii.gz",
            np.clip((a + 160) / 400 * 255, 0, 255).round().astype(np.uint8),
            geo,
        )  # window level 40, width 400
        write_nifti(out / f"hu_{name}_mr.nii.gz", _mr_like(a), geo)
    a, geo = vols["phantom"]
    write_nifti(out / "hu_zero.nii.gz", np.zeros(geo.shape, np.float32), geo)
    write_nifti(out / "hu_const.nii.gz", np.full(geo.shape, 40, np.float32), geo)
    nan = a.copy()
    nan[3, 4, 5] = np.nan
    write_nifti(out / "hu_nan.nii.gz", nan, geo)
    for name, values in (
        ("dcm_pv_plus1024_norescale", np.maximum(pv, -1024) + 1024),
        ("dcm_pv_8bit", np.clip((pv + 160) / 400 * 255, 0, 255).round()),
    ):
        write_dicom_series(out / name, values, g)
        for p in sorted((out / name).iterdir()):
            ds = pydicom.dcmread(p)
            del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
            ds.save_as(p)
    # item 4: a small phantom dataset and its variants
    clean = out / "ds_clean"
    assert (
        main(
            [
                "phantom",
                str(clean),
                "--cases",
                "6",
                "--shape",
                "64,64,16",
                "--spacing",
                "5,5,10",
                "--no-previews",
                "--folds",
                "2",
                "--workers",
                "1",
            ]
        )
        == 0
    )

    def variant(name, change):
        shutil.copytree(clean, out / name)
        change(out / name)

    def meta(root, change):
        m = json.loads((root / "dataset.json").read_text())
        change(m)
        (root / "dataset.json").write_text(json.dumps(m, indent=2))

    def tumour_only(root):
        path = root / "labelsTr" / "PHANTOM_0002.nii.gz"
        lab, lg = read_nifti(path)
        lab[lab == 1] = 0
        write_nifti(path, lab, lg)
        write_nifti(out / "label_tumour_only.nii.gz", lab, lg)

    def thin_pv(root):  # case 1's PV (and its label) cut to 2 slices
        for p in (root / "imagesTr" / "PHANTOM_0001_0000.nii.gz", root / "labelsTr" / "PHANTOM_0001.nii.gz"):
            arr, pg = read_nifti(p)
            affine = pg.affine.copy()
            affine[:3, 3] = pg.index_to_world(np.array([0, 0, 7]))
            write_nifti(p, arr[:, :, 7:9], Geometry(affine, (*arr.shape[:2], 2)))

    variant("ds_tumour_only", tumour_only)
    variant(
        "ds_listed_nofiles",
        lambda r: meta(r, lambda m: m["cases"].update({"PHANTOM_0009": {"tumor_type": "HCC", "fold": 0}})),
    )
    variant("ds_typo", lambda r: meta(r, lambda m: m["cases"]["PHANTOM_0003"].update({"tumor_type": "HCCC"})))
    variant("ds_pv2", thin_pv)
    # item 5: PV of 1 and 2 slices, the full case, and an untrained bundle
    pv_a, pv_g = c0.phases["PV"], c0.geometries["PV"]
    for n in (1, 2):
        affine = pv_g.affine.copy()
        affine[:3, 3] = pv_g.index_to_world(np.array([0, 0, 7]))
        write_nifti(
            out / f"ph_pv_{n}slice.nii.gz",
            pv_a[:, :, 7 : 7 + n].astype(np.int16),
            Geometry(affine, (*pv_a.shape[:2], n)),
        )
    write_nifti(out / "ph_pv.nii.gz", pv_a.astype(np.int16), pv_g)
    write_nifti(out / "ph_art.nii.gz", c0.phases["ART"].astype(np.int16), c0.geometries["ART"])
    tiny_bundle(out / "tiny.mpliver")


def run(work: Path, src: str, out_json: Path, items: list[str]) -> None:
    import nibabel as nib

    inputs = work / "in"
    env = dict(os.environ, PYTHONPATH=src, OMP_WAIT_POLICY="PASSIVE", COLUMNS="200")
    rows = []

    def cli(item, what, args, clean_label=None):
        tmp = Path(tempfile.mkdtemp(dir=work))
        args = [str(a).replace("@W", str(tmp)) for a in args]
        p = subprocess.run(
            [sys.executable, "-m", "mpliver", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=900,
        )
        err = [line for line in p.stderr.splitlines() if line.strip()]
        msg = [line for line in err if line.startswith(("error", "warning"))] or err[-1:] or ["(no message)"]
        check = ""
        if clean_label is not None and p.returncode == 0:
            got = np.asarray(nib.load(next((tmp / "ds" / "labelsTr").glob("*.nii.gz"))).dataobj)
            ref = np.asarray(nib.load(clean_label).dataobj)
            check = f"voxels differing from the clean label: {int(np.sum(got != ref))} of {ref.size}"
        rows.append(
            {
                "item": item,
                "input": what,
                "cmd": args[0],
                "rc": p.returncode,
                "stderr_lines": len(err),
                "message": " | ".join(msg).replace(str(inputs) + "/", ""),
                "check": check,
            }
        )
        print(json.dumps(rows[-1])[:300], flush=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def copy(name, tag):
        dst = work / f"{tag}_{name}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(inputs / name, dst)
        return dst

    if "2" in items:
        real = inputs / "pv_dicom_uids"
        for seg in ("seg_clean", "seg_one_source", "seg_other_patient", "seg_other_for", "seg_other_series"):
            cli(
                2,
                f"real PV + {seg}.dcm",
                ["convert", "--pv", real, "--art", real, "--label", inputs / f"{seg}.dcm", "--out", "@W/ds"],
                inputs / "pv_label_clean.nii.gz",
            )
        for seg, what in (
            ("ph_seg_clean", "phantom DICOM + its SEG"),
            ("ph_seg_one_source", "phantom DICOM + its SEG, frames naming one source slice"),
            ("ph1_seg", "phantom DICOM PH0 + a SEG made on patient PH1's series"),
        ):
            cli(
                2,
                what,
                [
                    "convert",
                    "--pv",
                    inputs / "ph_pv",
                    "--art",
                    inputs / "ph_art",
                    "--label",
                    inputs / f"{seg}.dcm",
                    "--out",
                    "@W/ds",
                ],
                inputs / "ph_label.nii.gz",
            )
    if "3" in items:
        names = [
            f"hu_{n}{s}.nii.gz"
            for n in ("pv", "lits", "unenh", "phantom")
            for s in ("", "_plus1024", "_8bit", "_mr")
        ]
        names += [
            "hu_zero.nii.gz",
            "hu_const.nii.gz",
            "hu_nan.nii.gz",
            "dcm_pv_plus1024_norescale",
            "dcm_pv_8bit",
            "pv_dicom_uids",
        ]
        for name in names:
            cli(3, name, ["convert", "--pv", inputs / name, "--art", inputs / name, "--out", "@W/ds"])
    if "4" in items:
        for ds in ("ds_clean", "ds_tumour_only", "ds_listed_nofiles", "ds_typo"):
            cli(4, ds, ["inspect", inputs / ds])
            cli(4, ds, ["plan", copy(ds, "plan"), "--folds", "2"])
            cli(
                4,
                ds,
                ["preprocess", inputs / ds, "--out", "@W/cache", "--workers", "1", "--input-size", "64"],
            )
            cli(4, ds, ["convert", inputs / ds, "--to", "nnunet", "--out", "@W/nn"])
            label = inputs / ("label_tumour_only.nii.gz" if ds == "ds_tumour_only" else "ph_label.nii.gz")
            cli(
                4,
                f"{ds} + a case appended" + (" with a tumour-only label" if ds == "ds_tumour_only" else ""),
                [
                    "convert",
                    "--pv",
                    inputs / "ph_pv.nii.gz",
                    "--art",
                    inputs / "ph_art.nii.gz",
                    "--label",
                    label,
                    "--case-id",
                    "NEW",
                    "--out",
                    copy(ds, "conv"),
                ],
            )
            cli(
                4,
                ds,
                [
                    "train",
                    inputs / ds,
                    "--out",
                    "@W/run",
                    "optim.epochs=1",
                    "data.slices_per_epoch=8",
                    "data.val_max_slices=8",
                    "data.input_size=64",
                    "data.cache=@W/cache",
                ],
            )
    if "5" in items:
        for n in (1, 2):
            cli(
                5,
                f"PV of {n} slice(s)",
                [
                    "predict",
                    "--model",
                    inputs / "tiny.mpliver",
                    "--pv",
                    inputs / f"ph_pv_{n}slice.nii.gz",
                    "--art",
                    inputs / "ph_art.nii.gz",
                    "--liver-mask",
                    inputs / "ph_label.nii.gz",
                    "--out",
                    "@W/pred",
                    "--device",
                    "cpu",
                ],
            )
        for reg in ("liver", "tumor-center"):
            cli(
                5,
                f"ds_pv2 (a case with a 2-slice PV), --registration {reg}",
                [
                    "preprocess",
                    inputs / "ds_pv2",
                    "--out",
                    "@W/cache",
                    "--workers",
                    "1",
                    "--input-size",
                    "64",
                    "--registration",
                    reg,
                ],
            )
    out_json.write_text(json.dumps(rows, indent=1))


def table(before: Path, after: Path) -> str:
    b, a = json.loads(before.read_text()), json.loads(after.read_text())
    lines = ["| item | input | command | before | after |", "|---|---|---|---|---|"]

    def cell(r):
        silent = r["rc"] == 0 and not r["message"].startswith("warning")
        text = "accepted without a word" if silent else r["message"].replace("|", "/")
        return f"rc {r['rc']}: {text}" + (f" ({r['check']})" if r["check"] else "")

    for rb, ra in zip(b, a, strict=True):
        assert (rb["input"], rb["cmd"]) == (ra["input"], ra["cmd"])
        lines.append(f"| {rb['item']} | {rb['input']} | {rb['cmd']} | {cell(rb)} | {cell(ra)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "build":
        build(Path(sys.argv[2]).resolve())
    elif command == "run":
        run(
            Path(sys.argv[2]).resolve(),
            sys.argv[3],
            Path(sys.argv[4]),
            sys.argv[5].split(",") if len(sys.argv) > 5 else ["2", "3", "4", "5"],
        )
    elif command == "table":
        print(table(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
