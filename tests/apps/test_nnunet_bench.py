"""`mpliver bench --peer nnunet` on a small study (with the nnU-Net extra): both predictors ran on the same
study, nnU-Net's outputs lie on the PV grid, and the ratios are the reported seconds' ratios."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.io.nifti import read_nifti


@pytest.mark.slow
def test_peer_bench_times_both_predictors_on_the_same_study(tmp_path):
    pytest.importorskip("nnunetv2", reason="the nnU-Net extra is not installed")
    from mpliver.apps.nnunet_bench import run_peer_bench

    r = run_peer_bench(tmp_path, "cpu-small", threads=2, shape=(64, 64, 16), spacing=(4.0, 4.0, 8.0))
    pv, pv_geom = read_nifti(tmp_path / "STUDY64x64x16_PV.nii.gz")
    for mode in ("no_tta", "tta"):
        seg, geom = read_nifti(tmp_path / "nnunet" / "out" / mode / "STUDY.nii.gz")
        assert seg.shape == pv.shape
        np.testing.assert_allclose(geom.affine, pv_geom.affine, atol=1e-4)
    mpliver_label = read_nifti(tmp_path / "mpliver_out" / "STUDY.nii.gz")[0]
    assert mpliver_label.shape == pv.shape  # mpliver predicted the same study
    secs = r["nnunet"]["seconds"]
    assert r["ratio_nnunet_tta_to_mpliver"] == pytest.approx(secs["tta"] / r["mpliver"]["total_s"], abs=0.01)
    assert r["ratio_nnunet_no_tta_to_mpliver"] == pytest.approx(secs["no_tta"] / r["mpliver"]["total_s"],
                                                                abs=0.01)
    assert r["nnunet"]["network"].endswith("PlainConvUNet") and r["nnunet"]["configuration"] == "2d"
