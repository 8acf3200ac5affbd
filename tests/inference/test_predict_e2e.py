"""End to end: train a tiny model (mpliver.training), bundle it, predict a held-out case from NIfTI and from
DICOM, and compare with `evaluate`; the batch mode; the real portal-venous DICOM series."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers.predict_toys import tiny_bundle
from mpliver.cli import main
from mpliver.evaluation.evaluate import evaluate_folders, read_per_case_csv
from mpliver.inference.batch import predict_dataset
from mpliver.inference.bundle import load_bundle
from mpliver.inference.predict import predict
from mpliver.io.dicom import read_dicom_series, write_dicom_series
from mpliver.io.dicom_seg import LABEL_SYNONYMS, read_dicom_seg
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import read_nifti

pytestmark = pytest.mark.slow

TINY = ["data.input_size=64", "data.slices_per_epoch=8", "data.batch_size=4", "data.num_workers=0",
        "data.val_max_slices=8", "train.threads=2", "train.progress=false", "train.tensorboard=false",
        "optim.epochs=1", "train.device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 5-case cohort, a tumour run and a liver run (one short epoch each), bundled by the CLI."""
    from mpliver.data.phantom import PhantomConfig, write_cohort
    from mpliver.training.config import load_config, load_task_config
    from mpliver.training.trainer import train

    root = tmp_path_factory.mktemp("e2e")
    config = PhantomConfig(shape=(64, 64, 16), spacing=(5.0, 5.0, 10.0))
    ds = write_cohort(root / "ds", 5, seed=1, config=config, previews=False)
    train(load_config("cpu-small", TINY), ds, 0, root / "tumor")
    train(load_task_config("cpu-small", "liver", TINY), ds, 0, root / "liver")
    bundle = root / "model.mpliver"
    args = ["bundle", str(root / "tumor"), "--out", str(bundle), "--liver-run", str(root / "liver")]
    assert main(args) == 0
    held_out = json.loads((root / "tumor" / "run_info.json").read_text())["fold_info"]["test_cases"][0]
    return {"root": root, "ds": ds, "bundle": bundle, "case": held_out}


def _nudged(trained) -> str:
    """The trained bundle with its tumour logit shifted so that about half of the held-out liver is called
    tumour: one epoch leaves every probability just under 0.5, which would make the Dice trivially 0."""
    ds, case = trained["ds"], trained["case"]
    path = trained["root"] / "nudged.mpliver"
    if path.exists():
        return path
    phases = {"PV": ds / "imagesTr" / f"{case}_0000.nii.gz", "ART": ds / "imagesTr" / f"{case}_0001.nii.gz"}
    result = predict(trained["bundle"], phases, liver_mask=ds / "labelsTr" / f"{case}.nii.gz", device="cpu")
    p = float(np.median(result.probability[result.liver]))
    content = torch.load(trained["bundle"], weights_only=True)
    content["tumor"]["state"]["urim.classifier.bias"][1] -= float(np.log(p / (1 - p)))
    torch.save(content, path)
    return path


def test_bundle_from_training_runs(trained):
    bundle = load_bundle(trained["bundle"])
    assert bundle.phases == ["PV", "ART"] and bundle.synthetic and bundle.training["num_cases"] == 4
    assert bundle.training["train_registration"] == "tumor-center"
    assert bundle.preprocess.registration == "liver" and bundle.preprocess.input_size == 64
    assert bundle.liver is not None and bundle.model_config.width == 0.25


def test_nifti_and_dicom_inputs_give_pv_geometry_and_the_dice_of_evaluate(trained, tmp_path):
    ds, case = trained["ds"], trained["case"]
    model = _nudged(trained)
    pv, art = ds / "imagesTr" / f"{case}_0000.nii.gz", ds / "imagesTr" / f"{case}_0001.nii.gz"
    label_path = ds / "labelsTr" / f"{case}.nii.gz"
    out_nii, out_dcm = tmp_path / "nifti", tmp_path / "dicom"
    assert main(["predict", "--model", str(model), "--out", str(out_nii), "--pv", str(pv), "--art", str(art),
                 "--liver-mask", str(label_path), "--device", "cpu"]) == 0
    folders = {}
    for name, path in (("PV", pv), ("ART", art)):
        array, geom = read_nifti(path)
        folders[name] = tmp_path / f"{name}_dicom"
        write_dicom_series(folders[name], array, geom, series_description=name)
    assert main(["predict", "--model", str(model), "--out", str(out_dcm), "--pv", str(folders["PV"]),
                 "--art", str(folders["ART"]), "--liver-mask", str(label_path), "--case-id", case,
                 "--dicom-seg", "--device", "cpu"]) == 0

    label, label_geom = read_nifti(label_path)
    dicom_geom = read_dicom_series(folders["PV"])[1]
    for out, geom in ((out_nii, label_geom), (out_dcm, dicom_geom)):
        for name in (f"{case}.nii.gz", f"{case}_uncertainty.nii.gz"):
            img = nib.load(str(out / name))
            assert img.shape == geom.shape
            np.testing.assert_allclose(img.affine, geom.affine, atol=1e-6)
        pred = np.asarray(nib.load(str(out / f"{case}.nii.gz")).dataobj)
        a, b = label == 2, pred == 2
        dice = 100.0 * 2 * np.sum(a & b) / (a.sum() + b.sum())
        assert 0 < dice < 100  # the nudged model calls part of the liver tumour
        summary = evaluate_folders(out, ds / "labelsTr", tmp_path / f"eval_{out.name}", cases=[case])
        (record,) = read_per_case_csv(tmp_path / f"eval_{out.name}" / "per_case.csv")
        assert record["case"] == case and record["dice"] == pytest.approx(dice, abs=1e-4)
        assert summary["dpc"] == pytest.approx(dice, abs=1e-6)
    np.testing.assert_allclose(dicom_geom.affine, label_geom.affine, atol=1e-4)
    a = np.asarray(nib.load(str(out_nii / f"{case}.nii.gz")).dataobj)
    b = np.asarray(nib.load(str(out_dcm / f"{case}.nii.gz")).dataobj)
    assert np.mean(a == b) > 0.995  # same anatomy, same model: DICOM round trip changes (almost) nothing
    seg, _, _ = read_dicom_seg(out_dcm / f"{case}_seg.dcm", folders["PV"], label_map=LABEL_SYNONYMS)
    np.testing.assert_array_equal(seg, b)


def _dataset_with_a_bad_case(trained, root):
    """imagesTs with the cohort's first three cases; the second one's ART file is truncated."""
    src = trained["ds"]
    root.mkdir()
    meta = json.loads((src / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(meta))
    cases = sorted({p.name[:-12] for p in (src / "imagesTr").glob("*_0000.nii.gz")})[:3]
    (root / "imagesTs").mkdir()
    (root / "masks").mkdir()
    for case in cases:
        for ch in ("0000", "0001"):
            shutil.copy(src / "imagesTr" / f"{case}_{ch}.nii.gz", root / "imagesTs")
        shutil.copy(src / "labelsTr" / f"{case}.nii.gz", root / "masks")
    bad = root / "imagesTs" / f"{cases[1]}_0001.nii.gz"
    bad.write_bytes(bad.read_bytes()[:1500])
    return cases


def test_batch_reports_a_bad_case_and_goes_on_then_skips_done_cases(tmp_path, trained, capsys):
    cases = _dataset_with_a_bad_case(trained, tmp_path / "ds")
    bundle = tiny_bundle(tmp_path / "m.mpliver")
    args = ["predict", "--model", str(bundle), "--input", str(tmp_path / "ds"),
            "--out", str(tmp_path / "out"), "--liver-mask", str(tmp_path / "ds" / "masks"),
            "--device", "cpu", "--timings"]
    assert main(args) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "2 predicted, 0 skipped (already done), 1 failed" in captured.out  # the result, on stdout
    assert f"failed {cases[1]}:" in err and "truncated" in err
    for case in (cases[0], cases[2]):
        assert (tmp_path / "out" / f"{case}.nii.gz").exists()
    assert not (tmp_path / "out" / f"{cases[1]}.nii.gz").exists()
    assert main(args) == 1
    assert "0 predicted, 2 skipped (already done), 1 failed" in capsys.readouterr().out


def test_torchrun_environment_shards_cases(tmp_path, trained, monkeypatch):
    cases = _dataset_with_a_bad_case(trained, tmp_path / "ds")
    bundle = load_bundle(tiny_bundle(tmp_path / "m.mpliver"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    summary = predict_dataset(bundle, tmp_path / "ds", tmp_path / "out",
                              liver_mask_dir=tmp_path / "ds" / "masks", device="cpu")
    assert (summary.rank, summary.world_size) == (1, 2)
    # rank 1 of 2 takes case index 1 only (the bad one): it fails alone, the others are left to rank 0
    assert summary.done == [] and list(summary.failed) == [cases[1]] and not summary.skipped


# ---- real data -----------------------------------------------------------------------------------------


def _sitk_label5_on(output_nifti, seg_path):
    """TotalSegmentator's liver (5) resampled onto an output's grid by SimpleITK alone (LPS, (k, j, i))."""
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(output_nifti))
    seg = sitk.ReadImage(str(seg_path))
    moved = sitk.Resample(seg, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, seg.GetPixelID())
    return sitk.GetArrayFromImage(moved) == 5, sitk.GetArrayFromImage(ref)


def test_real_pv_dicom_with_totalsegmentator_liver(shared_data, tmp_path, capsys):
    folder = shared_data / "totalseg_example"
    pv, seg = folder / "pv_dicom", folder / "pv_dicom_seg.nii.gz"
    bundle = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(bundle), "--out", str(out), "--pv", str(pv), "--art", str(pv),
                 "--liver-mask", str(seg), "--liver-mask-values", "5", "--case-id", "real", "--device", "cpu",
                 "--timings"]) == 0
    geom = read_dicom_series(pv)[1]
    img = nib.load(str(out / "real.nii.gz"))
    assert img.shape == geom.shape == (512, 512, 20)
    np.testing.assert_allclose(img.affine, geom.affine, atol=1e-4)
    liver5, ours = _sitk_label5_on(out / "real.nii.gz", seg)
    dice = 2 * np.sum(liver5 & (ours >= 1)) / (liver5.sum() + (ours >= 1).sum())
    assert liver5.sum() > 10000 and dice > 0.98
    assert "synthetic" not in img.header["descrip"].tobytes().decode()
    unc = np.asarray(nib.load(str(out / "real_uncertainty.nii.gz")).dataobj)
    assert unc.dtype == np.float32 and 0 <= unc.min() and unc.max() <= 1


def test_real_pv_with_a_shifted_copy_as_art(shared_data, tmp_path):
    folder = shared_data / "totalseg_example"
    pv, geom = read_dicom_series(folder / "pv_dicom")
    shift = np.array([4.0, -3.0, 2.0])
    affine = geom.affine.copy()
    affine[:3, 3] += shift  # the anatomy at p in PV appears at p + shift in this "ART"
    bundle = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    phases = {"PV": folder / "pv_dicom", "ART": (pv, Geometry(affine, geom.shape))}
    result = predict(bundle, phases, liver_mask=folder / "pv_dicom_seg.nii.gz", liver_mask_values=(5,),
                     device="cpu")
    centre = geom.index_to_world(np.argwhere(result.liver).mean(axis=0))
    np.testing.assert_allclose(result.transforms["ART"].displacement(centre), shift, atol=1.5)
    assert result.label.shape == geom.shape and result.liver.sum() > 10000


def test_real_pv_with_the_bundles_liver_model(shared_data, trained, tmp_path):
    pv = shared_data / "totalseg_example" / "pv_dicom"
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained["bundle"]), "--out", str(out), "--pv", str(pv), "--art",
                 str(pv), "--case-id", "real", "--device", "cpu"]) == 0
    img = nib.load(str(out / "real.nii.gz"))
    np.testing.assert_allclose(img.affine, read_dicom_series(pv)[1].affine, atol=1e-4)
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2}
