"""`mpliver convert DATASET --to nnunet`: every channel on the PV grid, ART resampled through world space,
and a dataset.json that nnU-Net v2 reads (CT normalisation from the channel name "CT")."""

from __future__ import annotations

import json

import numpy as np

from helpers.prep_scene import make_case, render
from mpliver.cli import main
from mpliver.data.registration import RigidTransform
from mpliver.io.geometry import Geometry
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import read_nifti, write_nifti


def _dataset(root, art_origin=(3.0, -2.0, 4.0), with_folds=False):
    """One case whose ART grid is shifted by a known offset, with a bright cube at a known world position."""
    pv_geom = Geometry.from_spacing((20, 20, 10), (1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    art_geom = Geometry.from_spacing((20, 20, 10), (1.0, 1.0, 2.0), origin=art_origin)
    pv = np.full(pv_geom.shape, 60.0, np.float32)
    pv[:2] = -1000.0
    art = np.full(art_geom.shape, 80.0, np.float32)
    art[:, :2] = -1000.0
    art[5:8, 6:9, 2:4] = 900.0  # world x 8..10, y 4..6, z 8..10 mm (for the default origin)
    label = np.zeros(pv_geom.shape, np.uint8)
    label[4:16, 4:16, 2:8] = 1
    label[8:11, 4:7, 4:6] = 2
    write_nifti(root / "imagesTr" / "c1_0000.nii.gz", pv, pv_geom)
    write_nifti(root / "imagesTr" / "c1_0001.nii.gz", art, art_geom)
    write_nifti(root / "labelsTr" / "c1.nii.gz", label, pv_geom)
    write_nifti(root / "imagesTs" / "t1_0000.nii.gz", pv, pv_geom)
    write_nifti(root / "imagesTs" / "t1_0001.nii.gz", art, art_geom)
    cases = {"c1": {"tumor_type": "HCC", "fold": 0}} if with_folds else None
    write_dataset_json(root, ["PV", "ART"], 1, cases=cases)
    return pv_geom, art_geom


def test_export_puts_art_on_pv_grid_with_cube_at_right_voxel(tmp_path, capsys):
    src = tmp_path / "layout"
    pv_geom, _ = _dataset(src)
    code = main(["convert", str(src), "--to", "nnunet", "--out", str(tmp_path / "raw")])
    assert code == 0, capsys.readouterr().err
    root = tmp_path / "raw" / "Dataset501_MPLiver"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.nii.gz"))
    assert files == [
        "imagesTr/c1_0000.nii.gz",
        "imagesTr/c1_0001.nii.gz",
        "imagesTs/t1_0000.nii.gz",
        "imagesTs/t1_0001.nii.gz",
        "labelsTr/c1.nii.gz",
    ]
    for f in files:
        _, g = read_nifti(root / f)
        np.testing.assert_allclose(g.affine, pv_geom.affine, atol=1e-6)  # every file on the PV grid
    art, _ = read_nifti(root / "imagesTr" / "c1_0001.nii.gz", dtype=np.float32)
    # By hand: ART voxel (5, 6, 2) is world (8, 4, 8) mm = PV voxel (8, 4, 4); the cube spans 3x3x2 voxels.
    bright = np.argwhere(art > 500)
    assert bright.min(axis=0).tolist() == [8, 4, 4] and bright.max(axis=0).tolist() == [10, 6, 5]
    assert len(bright) == 18
    np.testing.assert_allclose(art[8:11, 4:7, 4:6], 900.0, atol=1e-3)
    assert art[0, 0, 0] == -1024.0 and art[19, 19, 0] == -1024.0  # outside ART's field of view: air
    assert art[10, 10, 5] == 80.0
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "CT"}
    assert meta["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert meta["numTraining"] == 1 and meta["file_ending"] == ".nii.gz"
    assert meta["mpliver_phases"] == {"0": "PV", "1": "ART"}
    assert not (root / "splits_final.json").exists()


def test_half_voxel_shift_is_interpolated_linearly(tmp_path, capsys):
    src = tmp_path / "layout"
    _dataset(src, art_origin=(3.5, -2.0, 4.0))  # ART shifted half a voxel in x
    assert main(["convert", str(src), "--to", "nnunet", "--out", str(tmp_path / "raw")]) == 0
    art, _ = read_nifti(tmp_path / "raw" / "Dataset501_MPLiver" / "imagesTr" / "c1_0001.nii.gz")
    # Cube x from 8.5 to 10.5 mm: PV voxels x=9, 10 fully inside, x=8 and 11 half way (linear: (80+900)/2).
    np.testing.assert_allclose(art[9:11, 5, 4], 900.0, atol=1e-3)
    np.testing.assert_allclose([art[8, 5, 4], art[11, 5, 4]], [490.0, 490.0], atol=1e-3)


def test_splits_and_refusals(tmp_path, capsys):
    src = tmp_path / "layout"
    _dataset(src, with_folds=True)
    out = tmp_path / "raw"
    assert (
        main(["convert", str(src), "--to", "nnunet", "--out", str(out), "--dataset-id", "7", "--name", "X"])
        == 0
    )
    root = out / "Dataset007_X"
    assert json.loads((root / "splits_final.json").read_text()) == [{"train": [], "val": ["c1"]}]
    assert json.loads((root / "dataset.json").read_text())["mpliver_cases"] == {
        "c1": {"tumor_type": "HCC", "fold": 0}
    }
    capsys.readouterr()
    # Existing target: refused, then replaced with --overwrite.
    assert (
        main(["convert", str(src), "--to", "nnunet", "--out", str(out), "--dataset-id", "7", "--name", "X"])
        == 2
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Dataset007_X" in err and "--overwrite" in err
    assert (
        main(
            [
                "convert",
                str(src),
                "--to",
                "nnunet",
                "--out",
                str(out),
                "--dataset-id",
                "7",
                "--name",
                "X",
                "--overwrite",
            ]
        )
        == 0
    )
    # Same id under another name: refused.
    assert main(["convert", str(src), "--to", "nnunet", "--out", str(out), "--dataset-id", "7"]) == 2
    assert "already used by Dataset007_X" in capsys.readouterr().err
    # A layout case missing its ART phase: refused naming the file, nothing written.
    (src / "imagesTr" / "c1_0001.nii.gz").unlink()
    assert main(["convert", str(src), "--to", "nnunet", "--out", str(tmp_path / "raw2")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "c1_0001.nii.gz" in err and "missing phase ART" in err
    assert not (tmp_path / "raw2" / "Dataset501_MPLiver").exists()
    assert not [p for p in (out.iterdir()) if p.name.startswith(".")]


def _moved_scene(root, motion):
    """A prep_scene case (ART anatomy moved by `motion` mm, on a grid with another origin), in the layout.
    Returns the PV label, the PV grid and the ideal ART: the scene's ART rendered on the PV grid without
    motion (what a perfectly aligned ART channel holds, up to the scene's noise of SD 8 HU)."""
    pv, art, label, _, g_pv, g_art = make_case(shape=(72, 72, 22), spacing=(2.2, 2.2, 4.0), motion=motion,
                                              art_origin=(2.0, -3.0, 1.0))
    write_nifti(root / "imagesTr" / "c1_0000.nii.gz", pv, g_pv)
    write_nifti(root / "imagesTr" / "c1_0001.nii.gz", art, g_art)
    write_nifti(root / "labelsTr" / "c1.nii.gz", label, g_pv)
    write_dataset_json(root, ["PV", "ART"], 1, cases={"c1": {"tumor_type": "HCC", "fold": 0}})
    return label, g_pv, render(g_pv, (0.0, 0.0, 0.0), "ART")[0]


def test_register_aligns_the_art_channel_to_pv(tmp_path, capsys):
    motion = (3.0, -2.0, 6.0)  # 7 mm
    label, g_pv, ideal = _moved_scene(tmp_path / "layout", motion)
    liver = label >= 1
    mae, corr = {}, {}
    for flag in ([], ["--register"]):
        key = "reg" if flag else "plain"
        code = main(["convert", str(tmp_path / "layout"), "--to", "nnunet", "--out", str(tmp_path / key),
                     *flag])
        assert code == 0, capsys.readouterr().err
        art, _ = read_nifti(tmp_path / key / "Dataset501_MPLiver" / "imagesTr" / "c1_0001.nii.gz",
                            dtype=np.float32)
        mae[key] = float(np.abs(art - ideal)[liver].mean())
        corr[key] = float(np.corrcoef(art[liver], ideal[liver])[0, 1])
    # Over the PV liver, an aligned ART differs from the ideal by the noise alone: mean |N(0, 8)| = 6.4 HU
    # (a little less after linear interpolation); the 7 mm motion puts tumour/vessel edges out of place.
    assert mae["reg"] < 8.0 < 11.0 < mae["plain"], mae
    assert corr["reg"] > 0.7 and corr["reg"] > corr["plain"] + 0.3, corr
    root = tmp_path / "reg" / "Dataset501_MPLiver"
    record = json.loads((root / "mpliver_registration.json").read_text())["cases"]["c1"]["ART"]
    pts = g_pv.index_to_world(np.argwhere(liver))
    error = np.linalg.norm(RigidTransform.from_dict(record).displacement(pts) - np.asarray(motion), axis=1)
    assert error.mean() < 1.5  # the recorded transform maps PV liver points onto ART's within a voxel
    assert "liver registration" in json.loads((root / "dataset.json").read_text())["description"]


def test_register_refuses_a_case_without_label(tmp_path, capsys):
    src = tmp_path / "layout"
    _dataset(src)  # has imagesTs/t1 without label
    code = main(["convert", str(src), "--to", "nnunet", "--register", "--out", str(tmp_path / "raw")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "t1_0001.nii.gz" in err and "t1 has none" in err
    assert not (tmp_path / "raw" / "Dataset501_MPLiver").exists()


def test_register_only_with_to_nnunet(tmp_path, capsys):
    code = main(["convert", "--pv", "a.nii.gz", "--art", "b.nii.gz", "--register", "--out", str(tmp_path)])
    assert code != 0 and "--register goes only with --to nnunet" in capsys.readouterr().err
