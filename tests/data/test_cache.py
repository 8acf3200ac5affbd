"""`preprocess_dataset` and `mpliver preprocess`: cached arrays, manifest, reuse, invalidation, atomicity,
and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import mpliver.data.cache as cache_mod
from helpers.prep_scene import write_scene_dataset
from mpliver.cli import main
from mpliver.data.cache import CachedCase, open_cache, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.errors import InputError
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import read_nifti, write_nifti

FAST = PreprocessConfig(input_size=64, registration="none", margin_mm=5.0)


@pytest.fixture()
def dataset(tmp_path):
    return write_scene_dataset(tmp_path / "ds", num_cases=3)


def _case_files(cache: Path, case: str) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "cases" / case).iterdir()}


def test_cache_contents_and_exact_inverse(dataset, tmp_path):
    out = tmp_path / "cache"
    summary = preprocess_dataset(dataset, out, FAST, workers=1)
    assert sorted(summary.built) == ["SCENE_000", "SCENE_001", "SCENE_002"] and not summary.reused
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"] == FAST.to_dict() and manifest["phases"] == ["PV", "ART"]
    assert set(manifest["cases"]["SCENE_001"]["sources"]) == {"PV", "ART", "label"}
    cc = open_cache(out)["SCENE_001"]
    images, mask, label = cc.images, cc.mask, cc.label
    assert isinstance(images, np.memmap) and images.dtype == np.float16
    S = cc.num_slices
    assert images.shape == (2, S + 2, 64, 64) and mask.shape == label.shape == (S + 2, 64, 64)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # tumour slices recorded = centre slices whose cached label holds tumour
    expected = [s for s in range(S) if (label[s + 1] == 2).any()]
    assert cc.tumor_slices == expected and expected
    # the cached label of the centre slices maps back exactly onto the PV label (64 > box: lossless)
    ref, geom = read_nifti(dataset / "labelsTr" / "SCENE_001.nii.gz")
    back = cc.mapping.paste_back(np.asarray(label[1:-1]), mode="nearest")
    np.testing.assert_array_equal(back, ref)
    assert cc.pv_geometry.same_grid(geom)
    # the liver crop holds the whole liver: every liver voxel lies inside the box
    assert int((back >= 1).sum()) == int((ref >= 1).sum())


def test_rerun_reuses_and_invalidates_exactly(dataset, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(dataset, out, FAST, workers=1)
    before = {c: _case_files(out, c) for c in ("SCENE_000", "SCENE_001", "SCENE_002")}
    again = preprocess_dataset(dataset, out, FAST, workers=1)
    assert not again.built and len(again.reused) == 3
    # a changed source file invalidates that case only
    art_path = dataset / "imagesTr" / "SCENE_002_0001.nii.gz"
    art, g = read_nifti(art_path)
    write_nifti(art_path, art + 1.0, g)
    third = preprocess_dataset(dataset, out, FAST, workers=1)
    assert third.built == ["SCENE_002"] and sorted(third.reused) == ["SCENE_000", "SCENE_001"]
    assert _case_files(out, "SCENE_000") == before["SCENE_000"]
    # a changed global parameter invalidates all
    wider = PreprocessConfig(input_size=64, registration="none", margin_mm=8.0)
    fourth = preprocess_dataset(dataset, out, wider, workers=1)
    assert sorted(fourth.built) == ["SCENE_000", "SCENE_001", "SCENE_002"]


def test_killed_run_leaves_no_corrupt_case(dataset, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    real_save = np.save
    calls = {"n": 0}

    def dying_save(path, arr, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # second case, after its images were written
            raise KeyboardInterrupt
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(cache_mod.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(dataset, out, FAST, workers=1)
    monkeypatch.setattr(cache_mod.np, "save", real_save)
    entries = os.listdir(out / "cases")
    assert entries == ["SCENE_000"]  # no temporary folder, no half case
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["cases"]) == ["SCENE_000"]
    # a hard kill can leave a temporary folder behind: the next run removes it and finishes the job
    (out / "cases" / ".tmp-SCENE_001-dead").mkdir()
    (out / "cases" / ".tmp-SCENE_001-dead" / "images.npy").write_bytes(b"\x93NUMPY garbage")
    summary = preprocess_dataset(dataset, out, FAST, workers=1)
    assert summary.reused == ["SCENE_000"] and sorted(summary.built) == ["SCENE_001", "SCENE_002"]
    assert sorted(os.listdir(out / "cases")) == ["SCENE_000", "SCENE_001", "SCENE_002"]


def test_case_dir_without_manifest_entry_is_rebuilt(dataset, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(dataset, out, FAST, workers=1)
    meta = out / "cases" / "SCENE_001" / "meta.json"
    d = json.loads(meta.read_text())
    d["key"] = "stale"
    meta.write_text(json.dumps(d))
    summary = preprocess_dataset(dataset, out, FAST, workers=1)
    assert summary.built == ["SCENE_001"]


@pytest.mark.slow
def test_parallel_workers_match_serial_and_liver_registration(dataset, tmp_path):
    cfg = PreprocessConfig(input_size=48, registration="liver", margin_mm=5.0)
    preprocess_dataset(dataset, tmp_path / "a", cfg, workers=1)
    preprocess_dataset(dataset, tmp_path / "b", cfg, workers=2)
    for case in ("SCENE_000", "SCENE_002"):
        a = CachedCase.open(tmp_path / "a" / "cases" / case)
        b = CachedCase.open(tmp_path / "b" / "cases" / case)
        np.testing.assert_array_equal(a.images, b.images)
        tx = a.meta["transforms"]["ART"]
        assert tx["method"] == "liver"


def test_tumor_center_needs_phase_labels(dataset, tmp_path):
    cfg = PreprocessConfig(input_size=32, registration="tumor-center")
    summary = preprocess_dataset(dataset, tmp_path / "c", cfg, workers=1, cases=["SCENE_001"])
    tx = CachedCase.open(tmp_path / "c" / "cases" / "SCENE_001").meta["transforms"]["ART"]
    assert tx["method"] == "tumor-center" and summary.built == ["SCENE_001"]
    # scene motion (1, -1, 2) mm and ART origin (2, -3, 1): centroids differ by the motion up to voxelisation
    np.testing.assert_allclose(tx["translation"], [1.0, -1.0, 2.0], atol=1.5)
    (dataset / "labelsTr_phases" / "SCENE_002_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="SCENE_002_0001"):
        preprocess_dataset(dataset, tmp_path / "c", cfg, workers=1, cases=["SCENE_002"])


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.mark.slow
def test_cli_runs_and_reports_bad_input(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["preprocess", str(dataset), "--out", str(out), "--input-size", "32", "--workers", "1",
                 "--registration", "none"]) == 0
    assert "3 case(s) built" in capsys.readouterr().out
    # NaNs in a volume
    pv_path = dataset / "imagesTr" / "SCENE_001_0000.nii.gz"
    pv, g = read_nifti(pv_path)
    pv[3, 3, 3] = np.nan
    write_nifti(pv_path, pv, g)
    err = _one_line_error(capsys, ["preprocess", str(dataset), "--out", str(out), "--workers", "1",
                                   "--input-size", "32", "--registration", "none"])
    assert "SCENE_001_0000.nii.gz" in err and "NaN" in err
    pv[3, 3, 3] = 0.0
    write_nifti(pv_path, pv, g)
    # a phase on a wildly different grid (no physical overlap)
    art_path = dataset / "imagesTr" / "SCENE_002_0001.nii.gz"
    art, g_art = read_nifti(art_path)
    write_nifti(art_path, art, Geometry.from_spacing(art.shape, (3.5, 3.5, 5.0), origin=(0, 0, 9000)))
    err = _one_line_error(capsys, ["preprocess", str(dataset), "--out", str(out), "--workers", "1",
                                   "--input-size", "32"])
    assert "SCENE_002_0001.nii.gz" in err and "overlap" in err
    write_nifti(art_path, art, g_art)
    # an empty liver mask
    lab_path = dataset / "labelsTr" / "SCENE_000.nii.gz"
    lab, g_lab = read_nifti(lab_path)
    write_nifti(lab_path, np.zeros_like(lab), g_lab)
    err = _one_line_error(capsys, ["preprocess", str(dataset), "--out", str(out), "--workers", "1",
                                   "--input-size", "32", "--registration", "none"])
    assert "SCENE_000.nii.gz" in err and "empty" in err
