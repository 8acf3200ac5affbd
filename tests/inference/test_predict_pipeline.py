"""Issue 16 item 1: the pipelined batch (`predict --input DIR --workers N`) writes exactly what the sequential
batch writes (every array, header and report, case by case), reports a bad study in the same line and goes
on, with the liver mask from files (made in the preparation processes) or from the bundle's liver model (made
in the model process)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers.predict_toys import tiny_bundle, tiny_case, write_case_files
from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.inference.batch import predict_dataset

GOOD = [("case_a", 3, "HCC"), ("case_b", 5, "cyst"), ("case_c", 7, "METS"), ("case_d", 11, "FNH")]
BAD = "case_bad"  # its PV file is not a NIfTI file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """imagesTs with four different phantom studies and a broken one, and a folder of their liver masks."""
    root = tmp_path_factory.mktemp("ds")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "PV", "1": "ART"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "file_ending": ".nii.gz", "numTraining": 0}))
    (root / "imagesTs").mkdir()
    (root / "masks").mkdir()
    for index, (case, seed, kind) in enumerate(GOOD):
        files = write_case_files(tmp_path_factory.mktemp(case), tiny_case(index, seed, kind))
        shutil.copy(files["PV"], root / "imagesTs" / f"{case}_0000.nii.gz")
        shutil.copy(files["ART"], root / "imagesTs" / f"{case}_0001.nii.gz")
        shutil.copy(files["label"], root / "masks" / f"{case}.nii.gz")
    (root / "imagesTs" / f"{BAD}_0000.nii.gz").write_bytes(b"not a nifti file")
    shutil.copy(root / "imagesTs" / f"{GOOD[0][0]}_0001.nii.gz", root / "imagesTs" / f"{BAD}_0001.nii.gz")
    shutil.copy(root / "masks" / f"{GOOD[0][0]}.nii.gz", root / "masks" / f"{BAD}.nii.gz")
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A bundle whose liver model marks every voxel as liver (an untrained one marks none, which would fail
    every study before the network), so that its studies also carry the implausible-liver warning."""
    folder = tmp_path_factory.mktemp("b")
    content = torch.load(tiny_bundle(folder / "m.mpliver", liver=True), weights_only=True)
    content["liver"]["state"]["classifier.weight"].zero_()
    content["liver"]["state"]["classifier.bias"].copy_(torch.tensor([-10.0, 10.0]))
    torch.save(content, folder / "all_liver.mpliver")
    return folder / "all_liver.mpliver"


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "timing" not in k and "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def assert_same_outputs(expected_dir, got_dir):
    """Every file of `expected_dir` exists in `got_dir` with the same content: NIfTI arrays (values and
    dtype), affines and headers; JSON reports (without timings); the CSV tables and notices as text."""
    expected = sorted(p.name for p in expected_dir.iterdir())
    assert expected == sorted(p.name for p in got_dir.iterdir())
    for name in expected:
        a, b = expected_dir / name, got_dir / name
        if name.endswith(".nii.gz"):
            ia, ib = nib.load(str(a)), nib.load(str(b))
            da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
            assert da.dtype == db.dtype and np.array_equal(da, db), name
            assert np.array_equal(ia.affine, ib.affine), name
            assert ia.header.binaryblock == ib.header.binaryblock, name
        elif name.endswith(".json"):
            got, want = json.loads(b.read_text()), json.loads(a.read_text())
            assert _without_timings(got) == _without_timings(want), name
        else:
            assert a.read_text() == b.read_text(), name


@pytest.mark.slow
@pytest.mark.parametrize("liver", ["file", "model"])
def test_pipelined_batch_writes_what_the_sequential_batch_writes(bundle, dataset, tmp_path, liver):
    masks = dataset / "masks" if liver == "file" else None
    options = {"liver_mask_dir": masks, "device": "cpu", "probabilities": True}
    sequential = predict_dataset(bundle, dataset, tmp_path / "seq", **options)
    pipelined = predict_dataset(bundle, dataset, tmp_path / "pipe", workers=3, max_in_flight=3, **options)
    cases = [c for c, _, _ in GOOD]
    assert sequential.done == pipelined.done == cases  # in the dataset's order
    assert list(sequential.failed) == list(pipelined.failed) == [BAD]
    assert sequential.failed == pipelined.failed and "case_bad_0000.nii.gz" in pipelined.failed[BAD]
    assert sequential.warnings == pipelined.warnings
    assert bool(pipelined.warnings) == (liver == "model")  # the all-liver model is implausible
    assert_same_outputs(tmp_path / "seq", tmp_path / "pipe")
    assert len(list((tmp_path / "pipe").glob("*_probability.nii.gz"))) == len(cases)
    for stage in ("io", "liver", "registration", "preprocess", "network", "postprocess", "writing"):
        assert pipelined.timings[stage] > 0


@pytest.mark.slow
def test_the_command_line_pipeline_skips_finished_studies_and_keeps_at_most_one_in_flight(
        bundle, dataset, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", "-m", str(bundle), "-i", str(dataset), "--out", str(out), "--liver-mask",
            str(dataset / "masks"), "--device", "cpu", "--workers", "2"]
    assert main([*args, "--cases", "case_a,case_c", "--max-in-flight", "1"]) == 0
    assert "imagesTs: 2 predicted, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    assert main(args) == 1  # the broken study fails the batch's exit status, after the others are done
    captured = capsys.readouterr()
    assert "imagesTs: 2 predicted, 2 skipped (already done), 1 failed" in captured.out
    assert "failed case_bad" in captured.err.replace("\n", " ")
    sequential = tmp_path / "seq"
    assert main([*args[:5], "--out", str(sequential), *args[7:11]]) == 1
    assert_same_outputs(sequential, out)


def test_workers_are_checked(bundle, dataset, tmp_path, capsys):
    with pytest.raises(ConfigError, match="at least 1"):
        predict_dataset(bundle, dataset, tmp_path, liver_mask_dir=dataset / "masks", workers=0)
    with pytest.raises(ConfigError, match="at least 1"):
        predict_dataset(bundle, dataset, tmp_path, liver_mask_dir=dataset / "masks", workers=2,
                        max_in_flight=0)
    pv = dataset / "imagesTs" / "case_a_0000.nii.gz"
    assert main(["predict", "-m", str(bundle), "--pv", str(pv), "--art", str(pv), "--out", str(tmp_path),
                 "--workers", "2"]) == 2
    assert "--workers and --max-in-flight pipeline a batch" in capsys.readouterr().err


@pytest.mark.slow
def test_under_torchrun_each_rank_pipelines_its_own_shard(bundle, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    summary = predict_dataset(bundle, dataset, tmp_path, liver_mask_dir=dataset / "masks", device="cpu",
                              workers=2)
    # imagesTs sorted: case_a, case_b, case_bad, case_c, case_d -> rank 1 of 2 takes case_b and case_c
    assert (summary.rank, summary.world_size) == (1, 2)
    assert summary.done == ["case_b", "case_c"] and not summary.failed
    labels = sorted(p.name for p in tmp_path.glob("*.nii.gz") if not p.name.endswith("_uncertainty.nii.gz"))
    assert labels == ["case_b.nii.gz", "case_c.nii.gz"]


def _callbacks(log: list, in_flight: dict):
    from mpliver.inference.pipeline import PipelineCallbacks

    def leave(case, *_):
        in_flight["now"] -= 1
        log.append(("left", case))

    return PipelineCallbacks(skip=lambda case: False, write=lambda result: None,
                             done=lambda case, result: (leave(case), log.append(("done", case))),
                             failed=lambda case, line: (leave(case), log.append(("failed", case, line))))


@pytest.mark.slow
@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_max_in_flight_studies_are_between_submission_and_writing(bundle, dataset, limit):
    """Each study is counted from the moment its files are asked for (submission) until it is reported;
    the count never exceeds `max_in_flight`, and with more studies than the limit it reaches it."""
    from mpliver.inference.pipeline import predict_pipelined
    from mpliver.inference.predict import Predictor

    predictor = Predictor.from_bundle(bundle, device="cpu")
    cases = [c for c, _, _ in GOOD]
    log, in_flight, peak = [], {"now": 0}, []

    def phases_of(case):
        in_flight["now"] += 1
        peak.append(in_flight["now"])
        return {p: dataset / "imagesTs" / f"{case}_000{i}.nii.gz" for i, p in enumerate(("PV", "ART"))}

    predict_pipelined(predictor, cases, phases_of, _callbacks(log, in_flight),
                      liver_mask_of=lambda case: dataset / "masks" / f"{case}.nii.gz", workers=3,
                      max_in_flight=limit)
    assert [c for kind, c, *_ in log if kind == "left"] == cases and in_flight["now"] == 0
    assert max(peak) == limit


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_a_preparation_process_that_dies_fails_its_study_and_the_batch_goes_on(bundle, dataset, workers):
    from helpers.killer_path import KillerPath
    from mpliver.inference.pipeline import predict_pipelined
    from mpliver.inference.predict import Predictor

    predictor = Predictor.from_bundle(bundle, device="cpu")
    cases = ["case_a", "killed", "case_b", "case_c"]
    log, in_flight = [], {"now": 0}

    def phases_of(case):
        in_flight["now"] += 1
        if case == "killed":
            return {"PV": KillerPath(dataset / "imagesTs" / "case_a_0000.nii.gz"),
                    "ART": dataset / "imagesTs" / "case_a_0001.nii.gz"}
        return {p: dataset / "imagesTs" / f"{case}_000{i}.nii.gz" for i, p in enumerate(("PV", "ART"))}

    def liver_mask_of(case):
        return dataset / "masks" / f"{case.replace('killed', 'case_a')}.nii.gz"

    predict_pipelined(predictor, cases, phases_of, _callbacks(log, in_flight), liver_mask_of=liver_mask_of,
                      workers=workers, max_in_flight=3)
    failed = {c: line for kind, c, *rest in log if kind == "failed" for line in rest}
    done = [c for kind, c in (e[:2] for e in log) if kind == "done"]
    # only the study that kills a pool in which it runs alone fails; its neighbours, whose tasks died with
    # the pool, run again and are written
    assert failed == {"killed": "case killed: its preparation process died (out of memory?)"}
    assert done == ["case_a", "case_b", "case_c"] and in_flight["now"] == 0
