"""Integration: the synthetic cohort through registration, the cache and the loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpliver.data.cache import open_cache, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset
from mpliver.data.phantom import write_cohort
from mpliver.io.nifti import read_nifti


@pytest.mark.slow
def test_phantom_cohort_end_to_end(tmp_path):
    root = write_cohort(tmp_path / "cohort", 2, seed=0, previews=False, num_folds=2)
    summary = preprocess_dataset(root, tmp_path / "cache", PreprocessConfig(input_size=128), workers=1)
    assert len(summary.built) == 2
    meta = json.loads((root / "dataset.json").read_text())["cases"]
    cache = open_cache(tmp_path / "cache")
    for case, cc in cache.items():
        label, geom = read_nifti(root / "labelsTr" / f"{case}.nii.gz")
        # liver registration: mean displacement error over the liver within 1.5 mm of the true motion
        tx = cc.meta["transforms"]["ART"]
        pts = geom.index_to_world(np.argwhere(label >= 1)[::20])
        disp = pts @ np.asarray(tx["matrix"]).T + np.asarray(tx["translation"]) - pts
        motion = np.asarray(meta[case]["motion_mm"])
        assert np.linalg.norm(disp - motion, axis=1).mean() < 1.5
        # the cached label maps back onto the PV label (resized 128 -> box -> PV grid)
        back = cc.mapping.paste_back(np.asarray(cc.label[cc.halo:-cc.halo]), mode="nearest")
        liver, back_liver = label >= 1, back >= 1
        assert 2 * (liver & back_liver).sum() / (liver.sum() + back_liver.sum()) >= 0.98
        assert cc.tumor_slices
    data = SliceDataset(tmp_path / "cache", sorted(cache))
    item = data[int(data.tumor_items[0])]
    assert item["phases"].shape == (2, 3, 128, 128) and item["label"].sum() > 0


def test_non_default_protocol_goes_through_the_cache(tmp_path):
    """An EQP + ART cohort (issue 13): EQP is the primary phase, ART is registered onto it, cached second."""
    from mpliver.data.phantom import PhantomConfig

    config = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6), phases=("EQP", "ART"))
    root = write_cohort(tmp_path / "cohort", 2, seed=1, config=config, previews=False,
                        num_folds=2, workers=1)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "EQP", "1": "ART"}
    summary = preprocess_dataset(root, tmp_path / "cache", PreprocessConfig(input_size=64), workers=1)
    assert len(summary.built) == 2
    cache = open_cache(tmp_path / "cache")
    for case, cc in cache.items():
        assert list(cc.meta["transforms"]) == ["ART"]
        label, _ = read_nifti(root / "labelsTr" / f"{case}.nii.gz")
        back = cc.mapping.paste_back(np.asarray(cc.label[cc.halo:-cc.halo]), mode="nearest")
        liver, back_liver = label >= 1, back >= 1
        assert 2 * (liver & back_liver).sum() / (liver.sum() + back_liver.sum()) >= 0.95
    data = SliceDataset(tmp_path / "cache", sorted(cache))
    assert data[0]["phases"].shape == (2, 3, 64, 64)
