"""Issue 12 outputs of `predict`: the probability map and its threshold rule, uncertainty 0 outside the liver,
the liver check (an all-liver model on the real PV series warns, --strict refuses), fold ensembles, the
report's liver volume, burden, registration and DICOM references, and the batch options."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers.predict_toys import tiny_bundle
from mpliver.cli import main
from mpliver.inference.bundle import load_bundle
from mpliver.inference.predict import predict
from mpliver.io.geometry import Geometry


def _edit(path, out, edit):
    """A copy of a bundle file with `edit(content)` applied (the way a real bundle is stored)."""
    content = torch.load(path, weights_only=True)
    edit(content)
    torch.save(content, out)
    return out


def _nudged(bundle_path, phases, liver_mask, out, **kw):
    """The bundle with its tumour logit shifted so that the median liver probability is 0.5: about half of
    the liver is tumour, so both sides of the threshold are well populated."""
    result = predict(bundle_path, phases, liver_mask=liver_mask, device="cpu", **kw)
    p = float(np.median(result.probability[result.liver]))

    def shift(content):
        content["tumor"]["state"]["urim.classifier.bias"][1] -= float(np.log(p / (1 - p)))

    return _edit(bundle_path, out, shift)


def _all_liver(bundle_path, out):
    """The bundle with a liver network whose every output is a confident 'liver'."""

    def constant(content):
        state = content["liver"]["state"]
        state["classifier.weight"].zero_()
        state["classifier.bias"].copy_(torch.tensor([-10.0, 10.0]))

    return _edit(bundle_path, out, constant)


@pytest.fixture(scope="module")
def nudged(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    phases = {"PV": files["PV"], "ART": files["ART"]}
    return _nudged(tiny_bundle(root / "m.mpliver"), phases, files["label"], root / "nudged.mpliver")


# ---- probability, threshold rule, uncertainty ------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--tta"]])
def test_probability_map_thresholded_is_the_label_maps_tumour_exactly(nudged, files, tmp_path, extra):
    out = tmp_path / "out"
    args = ["predict", "--model", str(nudged), "--out", str(out), "--pv", str(files["PV"]), "--art",
            str(files["ART"]), "--liver-mask", str(files["label"]), "--device", "cpu", "--save-probabilities",
            *extra]
    assert main(args) == 0
    img = nib.load(str(out / "CASE_probability.nii.gz"))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, nib.load(str(files["PV"])).affine)
    prob = np.asarray(img.dataobj)
    label = np.asarray(nib.load(str(out / "CASE.nii.gz")).dataobj)
    unc = np.asarray(nib.load(str(out / "CASE_uncertainty.nii.gz")).dataobj)
    liver = np.asarray(nib.load(str(files["label"])).dataobj) >= 1
    tumour = label == 2
    assert 0.1 < tumour.sum() / liver.sum() < 0.9  # both sides of the threshold are populated
    np.testing.assert_array_equal(prob > 0.5, tumour)
    assert np.all(prob[~liver] == 0) and np.all(unc[~liver] == 0)  # nothing outside the liver
    assert unc[liver].max() > 0.5  # and the map is not blank inside it
    doc = json.loads((out / "CASE_lesions.json").read_text())
    assert "probability > 0.5" in doc["probability_rule"]


def test_uncertainty_was_nonzero_outside_the_liver_before_masking(nudged, files):
    """The network's raw output covers the liver box: the masking is what makes u = 0 outside the liver."""
    from mpliver.inference.predict import uncertainty_from_probability

    result = predict(nudged, {"PV": files["PV"], "ART": files["ART"]}, liver_mask=files["label"],
                     device="cpu")
    outside = ~result.liver
    assert np.all(result.probability[outside] == 0) and np.all(result.uncertainty[outside] == 0)
    # u of a probability of 0 is exactly 0 (S_min is clamped at 1e-6: exp(1 - 1e6) underflows)
    assert uncertainty_from_probability(np.zeros(3, np.float32)).max() == 0.0


# ---- report: liver volume, burden, incomplete, registration -----------------------------------------------


def test_report_gives_liver_volume_burden_and_registration(nudged, files, case, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--model", str(nudged), "--out", str(out), "--pv", str(files["PV"]), "--art",
                 str(files["ART"]), "--liver-mask", str(files["label"]), "--device", "cpu"]) == 0
    doc = json.loads((out / "CASE_lesions.json").read_text())
    geom = case.geometries["PV"]
    voxel_ml = float(np.prod(geom.spacing)) / 1000
    liver = case.label >= 1
    assert doc["liver_volume_ml"] == pytest.approx(liver.sum() * voxel_ml)
    tumour = np.asarray(nib.load(str(out / "CASE.nii.gz")).dataobj) == 2
    assert doc["tumor_volume_ml"] == pytest.approx(tumour.sum() * voxel_ml)
    assert doc["tumor_burden_percent"] == pytest.approx(100 * tumour.sum() / liver.sum())
    check = doc["liver_check"]
    assert check["plausible"] is True and check["volume_ml"] == pytest.approx(doc["liver_volume_ml"])
    assert any("Feng" in s for s in check["volume_sources"]) and check["source"].endswith("CASE_label.nii.gz")
    art = doc["registration"]["ART"]
    assert art["method"] == "liver" and art["final_metric"] < 0 and art["rotation_deg"] < 10
    assert len(art["displacement_mm"]) == 3
    assert art["displacement_norm_mm"] == pytest.approx(np.linalg.norm(art["displacement_mm"]))
    # incomplete: recomputed from each component's voxels (does it touch a face of the image?)
    from scipy import ndimage

    components, n = ndimage.label(tumour, structure=np.ones((3, 3, 3), bool))
    expected = []
    for i in range(1, n + 1):
        idx = np.argwhere(components == i)
        expected.append((len(idx), bool(np.any(idx == 0) or np.any(idx == np.array(geom.shape) - 1))))
    assert sorted((r["voxels"], r["incomplete"]) for r in doc["lesions"]) == sorted(expected)
    notice = (out / "CASE_lesions_notice.txt").read_text()
    assert "not for clinical use" in notice and "synthetic" in notice


@pytest.mark.slow
def test_registration_result_on_the_real_series_with_a_shifted_copy(shared_data, tmp_path):
    from mpliver.io.dicom import read_dicom_series

    folder = shared_data / "totalseg_example"
    pv, geom = read_dicom_series(folder / "pv_dicom")
    shift = np.array([4.0, -3.0, 2.0])
    affine = geom.affine.copy()
    affine[:3, 3] += shift
    bundle = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    result = predict(bundle, {"PV": folder / "pv_dicom", "ART": (pv, Geometry(affine, geom.shape))},
                     liver_mask=folder / "pv_dicom_seg.nii.gz", liver_mask_values=(5,), device="cpu")
    art = result.report_meta()["registration"]["ART"]
    np.testing.assert_allclose(art["displacement_mm"], shift, atol=1.5)
    assert art["displacement_norm_mm"] == pytest.approx(np.linalg.norm(shift), abs=1.5)
    assert art["rotation_deg"] < 1.0 and art["final_metric"] < 0
    centre = geom.index_to_world(np.argwhere(result.liver).mean(axis=0))
    np.testing.assert_allclose(art["liver_centre_mm"], centre, atol=1e-3)


# ---- the liver check on the real PV series -----------------------------------------------------------------


@pytest.mark.slow
def test_all_liver_model_on_the_real_pv_series_warns_and_the_report_says_why(shared_data, tmp_path, capsys):
    pv = shared_data / "totalseg_example" / "pv_dicom"
    bundle = _all_liver(tiny_bundle(tmp_path / "m.mpliver", liver=True, synthetic=False),
                        tmp_path / "all_liver.mpliver")
    out = tmp_path / "out"
    args = ["predict", "--model", str(bundle), "--out", str(out), "--pv", str(pv), "--art", str(pv),
            "--case-id", "real", "--device", "cpu", "--registration", "none"]
    assert main(args) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "implausible liver mask" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: case real:")
    assert "above 2900 mL" in warning[0] and "20 of its 20 slices" in warning[0]
    assert "100% of the body" in warning[0]
    doc = json.loads((out / "real_lesions.json").read_text())
    check = doc["liver_check"]
    assert check["plausible"] is False and check["flags"] == ["volume", "border", "body"]
    assert check["volume_ml"] == pytest.approx(512 * 512 * 20 * 0.9765625**2 * 2 / 1000)  # 10 L
    assert check["border_slices"] == check["slices"] == 20 and check["body_share"] == 1.0
    assert doc["liver_volume_ml"] == pytest.approx(check["volume_ml"])
    assert any("above 2900 mL" in p for p in check["problems"])
    for name in ("real.nii.gz", "real_uncertainty.nii.gz"):
        descrip = nib.load(str(out / name)).header["descrip"].tobytes().rstrip(b"\0").decode()
        assert "implausible liver: volume,border,body" in descrip and "research" in descrip
    # --strict turns the warning into a one-line error, before anything is written
    strict_out = tmp_path / "strict"
    assert main([*args[:4], str(strict_out), *args[5:], "--strict"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(pv) in lines[-1] and "--strict" in lines[-1]
    assert "case real: implausible liver mask" in lines[-1]
    assert not (strict_out / "real.nii.gz").exists()


@pytest.mark.slow
def test_dicom_input_names_the_first_and_last_image_of_each_lesion(shared_data, tmp_path):
    import pydicom

    folder = shared_data / "totalseg_example"
    phases = {"PV": folder / "pv_dicom", "ART": folder / "pv_dicom"}
    mask = folder / "pv_dicom_seg.nii.gz"
    base = tiny_bundle(tmp_path / "m.mpliver", synthetic=False)
    result = predict(base, phases, liver_mask=mask, liver_mask_values=(5,), device="cpu",
                     registration="none")
    p = float(np.quantile(result.probability[result.liver], 0.9))  # about a tenth of the liver is tumour

    def shift(content):
        content["tumor"]["state"]["urim.classifier.bias"][1] -= float(np.log(p / (1 - p)))

    bundle = _edit(base, tmp_path / "n.mpliver", shift)
    result = predict(bundle, phases, liver_mask=mask, liver_mask_values=(5,), device="cpu",
                     registration="none")
    assert result.lesions
    # an independent reading: every file's header, ordered by position along the slice normal
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted((folder / "pv_dicom").iterdir())
               if f.is_file()]
    iop = np.asarray(headers[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    headers.sort(key=lambda h: float(np.asarray(h.ImagePositionPatient, float) @ normal))
    # this series leaves SOPInstanceUID empty in the data set; the file meta holds the same UID
    assert all(str(h.get("SOPInstanceUID", "")) == "" for h in headers)

    def uid(header):
        return str(header.file_meta.MediaStorageSOPInstanceUID)

    for row in result.lesions[:5]:
        first, last = headers[row["first_slice"]], headers[row["last_slice"]]  # axial axis is k here
        assert row["first_sop_instance_uid"] == uid(first) and uid(first).startswith("1.")
        assert row["last_sop_instance_uid"] == uid(last) and uid(last).startswith("1.")
        assert row["first_instance_number"] == int(first.InstanceNumber)
        assert row["last_instance_number"] == int(last.InstanceNumber)


# ---- fold ensembles ---------------------------------------------------------------------------------------


def test_ensemble_is_the_mean_of_the_members_softmax(files, tmp_path):
    phases = {"PV": files["PV"], "ART": files["ART"]}
    a = tiny_bundle(tmp_path / "a.mpliver")
    b = _edit(tiny_bundle(tmp_path / "b0.mpliver", seed=5), tmp_path / "b.mpliver", lambda c: None)
    pa = predict(a, phases, liver_mask=files["label"], device="cpu")
    pb = predict(b, phases, liver_mask=files["label"], device="cpu")
    both = predict([a, b], phases, liver_mask=files["label"], device="cpu")
    assert not np.allclose(pa.probability, pb.probability)  # two different members
    np.testing.assert_allclose(both.probability, (pa.probability + pb.probability) / 2, atol=1e-6)
    np.testing.assert_array_equal(both.label == 2, both.probability > 0.5)
    assert both.models == [str(a), str(b)]


def test_cli_ensemble_with_both_spellings(files, tmp_path, capsys):
    a, b = tiny_bundle(tmp_path / "a.mpliver"), tiny_bundle(tmp_path / "b.mpliver", seed=5)
    common = ["--pv", str(files["PV"]), "--art", str(files["ART"]), "--liver-mask", str(files["label"]),
              "--device", "cpu", "--save-probabilities"]
    assert main(["predict", "--model", str(a), str(b), "--out", str(tmp_path / "o1"), *common]) == 0
    assert main(["predict", "-m", str(a), "-m", str(b), "--out", str(tmp_path / "o2"), *common]) == 0
    p1 = np.asarray(nib.load(str(tmp_path / "o1" / "CASE_probability.nii.gz")).dataobj)
    p2 = np.asarray(nib.load(str(tmp_path / "o2" / "CASE_probability.nii.gz")).dataobj)
    np.testing.assert_array_equal(p1, p2)
    doc = json.loads((tmp_path / "o1" / "CASE_lesions.json").read_text())
    assert doc["models"] == [str(a), str(b)]
    capsys.readouterr()
    assert main(["predict", "--model", str(a), "nonexistent.mpliver", "--out", str(tmp_path / "o3"),
                 *common]) == 2
    assert "unexpected argument 'nonexistent.mpliver'" in capsys.readouterr().err


def test_ensemble_of_bundles_that_disagree_is_refused_in_one_line(files, tmp_path, capsys):
    from helpers.predict_toys import tiny_model
    from mpliver.data.config import PreprocessConfig
    from mpliver.inference.bundle import save_bundle

    a = tiny_bundle(tmp_path / "a.mpliver")
    pre = PreprocessConfig(input_size=96, crop=True, registration="liver", liver_mask_source="file",
                           liver_mask_pattern="(given to predict)")
    other = save_bundle(tmp_path / "b96.mpliver", tiny_model(), ["PV", "ART"], pre, {"synthetic": True})
    three = tiny_bundle(tmp_path / "three.mpliver", phases=("PV", "ART", "DELAY"), num_phases=3)
    common = ["--out", str(tmp_path / "o"), "--pv", str(files["PV"]), "--art", str(files["ART"]),
              "--liver-mask", str(files["label"]), "--device", "cpu"]
    for bad, words in ((other, "input_size is 64 vs 96"), (three, "same phases")):
        assert main(["predict", "--model", str(a), str(bad), *common]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: the bundles of an ensemble must") and words in lines[-1]
        assert str(bad) in lines[-1]
    assert not (tmp_path / "o").exists()


def test_ensemble_takes_the_liver_model_of_the_first_member_that_has_one(tmp_path):
    from mpliver.inference.ensemble import liver_bundle, load_ensemble

    plain, with_liver = tiny_bundle(tmp_path / "p.mpliver"), tiny_bundle(tmp_path / "l.mpliver", liver=True)
    bundles = load_ensemble([plain, with_liver])
    assert liver_bundle(bundles) is bundles[1] and liver_bundle(load_ensemble(plain)) is None
    assert load_ensemble(load_bundle(plain))[0].phases == ["PV", "ART"]


def test_dicom_slice_refs_follow_the_slice_order_not_the_file_names(tmp_path):
    import pydicom

    from mpliver.inference.case_report import dicom_slice_refs
    from mpliver.io.dicom import scan_series, write_dicom_series

    geom = Geometry.from_spacing((8, 6, 5), (1.0, 1.0, 2.0))
    folder = tmp_path / "series"
    write_dicom_series(folder, np.zeros(geom.shape, np.float32), geom)
    files = sorted(folder.iterdir())
    for path, new_name in zip(files, reversed([f"z{i}.dcm" for i in range(len(files))]), strict=True):
        path.rename(folder / new_name)  # file names now run against the slice order
    by_position = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()),
                         key=lambda h: float(h.ImagePositionPatient[2]))
    expected = [(int(h.InstanceNumber), str(h.SOPInstanceUID)) for h in by_position]
    assert dicom_slice_refs(scan_series(folder)) == expected and len({uid for _, uid in expected}) == 5


@pytest.mark.parametrize("synthetic", [False, True])
def test_nifti_note_fits_the_header_for_every_failed_check(synthetic):
    from itertools import combinations

    from mpliver.data.liver_check import LiverCheck
    from mpliver.inference.case_report import NIFTI_NOTE, SYNTHETIC_NOTE, nifti_note

    ok = LiverCheck(1500.0, 30, 0, 0.2, False)
    assert nifti_note(synthetic, ok) == NIFTI_NOTE + (SYNTHETIC_NOTE if synthetic else "")
    for n in (1, 2, 3):
        for flags in combinations(["volume", "border", "body"], n):
            check = LiverCheck(1500.0, 30, 0, 0.2, False, problems=list(flags), flags=list(flags))
            note = nifti_note(synthetic, check)
            assert len(note) <= 79 and "research" in note and "clinical" in note
            assert note.endswith("implausible liver: " + ",".join(flags))
            assert ("synth" in note) is synthetic
