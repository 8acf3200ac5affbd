"""The `Predictor`: built once from a bundle and reused for every study, one method per stage. Its stages
run by hand give what `predict` gives, `predict` reports the stages in order, the networks are made once
per predictor, and a batch builds one predictor for all its cases."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import mpliver.inference.batch as batch
from helpers.predict_toys import tiny_case, write_case_files
from mpliver.errors import ConfigError, InputError
from mpliver.inference.clock import STAGES, StageClock
from mpliver.inference.predict import Predictor, predict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return {i: write_case_files(tmp_path_factory.mktemp(f"case{i}"), tiny_case(i, seed)) for i, seed in
            enumerate((3, 5))}


def _phases(f):
    return {"PV": f["PV"], "ART": f["ART"]}


def _assert_same(a, b):
    for name in ("label", "uncertainty", "probability", "liver"):
        got, want = getattr(a, name), getattr(b, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert a.lesions == b.lesions and a.models == b.models and a.synthetic == b.synthetic
    assert a.liver_origin == b.liver_origin and a.transforms.keys() == b.transforms.keys()


def test_one_predictor_for_several_studies_gives_what_predict_gives(bundle_path, files):
    predictor = Predictor.from_bundle(bundle_path, device="cpu")
    for i, f in files.items():
        got = predictor.predict(_phases(f), liver_mask=f["label"], case_id=f"c{i}")
        want = predict(bundle_path, _phases(f), liver_mask=f["label"], case_id=f"c{i}", device="cpu")
        _assert_same(got, want)
        assert got.case_id == f"c{i}"
    # the tumour network is made once (BN folded) and reused by the second study
    assert len(predictor.bundles[0]._fast) == 1


def test_the_stages_by_hand_are_predict(bundle_path, files):
    predictor = Predictor.from_bundle(bundle_path, device="cpu")
    f = files[0]
    study = predictor.read_study(_phases(f), "c0")
    assert list(study.volumes) == ["PV", "ART"] and list(study.timings) == ["io"]
    liver = predictor.liver_mask(study, f["label"])
    assert liver.mask.dtype == bool and liver.check.ok and list(study.timings) == ["io", "liver"]
    registered = predictor.register(study, liver)
    assert set(registered.transforms) == {"ART"}
    assert all(g.same_grid(study.geometries["PV"]) for g in registered.geometries.values())
    prepared = predictor.prepare(registered, liver)
    assert prepared.stacks.ndim == 5 and prepared.stacks.dtype == np.float32
    prob = predictor.infer(prepared)
    assert prob.shape == (prepared.stacks.shape[0], *prepared.stacks.shape[-2:])
    result = predictor.finish_study(prepared, prob)
    assert list(result.timings) == list(STAGES)
    _assert_same(result, predictor.predict(_phases(f), liver_mask=f["label"], case_id="c0"))


def test_predict_reports_every_stage_in_order(bundle_path, files):
    seen = []
    result = Predictor.from_bundle(bundle_path, device="cpu").predict(
        _phases(files[0]), liver_mask=files[0]["label"], on_stage=seen.append)
    assert seen == list(STAGES)
    assert all(result.timings[name] > 0 for name in STAGES)


def test_a_predictor_without_bundles_runs_the_cpu_stages_only(bundle_path, files):
    full = Predictor.from_bundle(bundle_path, device="cpu")
    cpu = Predictor(full.settings)
    f = files[0]
    prepared = cpu.prepare_study(_phases(f), "c0", liver_mask=f["label"])
    expected = full.prepare_study(_phases(f), "c0", liver_mask=f["label"], clock=StageClock())
    assert np.array_equal(prepared.stacks, expected.stacks)
    with pytest.raises(InputError, match="no liver model"):
        cpu.liver_mask(cpu.read_study(_phases(f), "c0"))
    with pytest.raises(ConfigError, match="the network stage needs a model"):
        cpu.infer(prepared)


def test_from_bundle_checks_its_options_first(bundle_path):
    with pytest.raises(ConfigError, match="precision must be one of"):
        Predictor.from_bundle(bundle_path, precision="fp16")
    with pytest.raises(ConfigError, match="registration at inference must be"):
        Predictor.from_bundle(bundle_path, device="cpu", registration="affine")


def test_a_batch_builds_one_predictor_for_all_its_cases(bundle_path, files, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    (root / "imagesTs").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "PV", "1": "ART"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "file_ending": ".nii.gz", "numTraining": 0}))
    for i, f in files.items():
        shutil.copy(f["PV"], root / "imagesTs" / f"c{i}_0000.nii.gz")
        shutil.copy(f["ART"], root / "imagesTs" / f"c{i}_0001.nii.gz")
        shutil.copy(f["label"], root / "masks" / f"c{i}.nii.gz")
    built, predicted = [], []

    class Counting(Predictor):
        def __init__(self, *args, **kwargs):
            built.append(self)
            super().__init__(*args, **kwargs)

        def predict(self, phases, **kwargs):
            predicted.append(kwargs["case_id"])
            return super().predict(phases, **kwargs)

    monkeypatch.setattr(batch, "Predictor", Counting)
    summary = batch.predict_dataset(bundle_path, root, tmp_path / "out", liver_mask_dir=root / "masks",
                                    device="cpu")
    assert summary.done == ["c0", "c1"] and not summary.failed
    assert len(built) == 1 and predicted == ["c0", "c1"]
