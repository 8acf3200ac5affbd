"""`predict --input` options of issue 12: the split (imagesTr or imagesTs), a case filter, --overwrite, the
probability map and the liver-check warning in a batch, and where results and logs are printed."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from helpers.predict_toys import tiny_bundle, tiny_case, write_case_files
from mpliver.cli import main
from mpliver.errors import InputError
from mpliver.inference.batch import dataset_cases

TR, TS = ["liver_001", "liver_002", "other_003"], ["test_001"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """imagesTr with three cases, imagesTs with one, and a folder of liver masks for all of them."""
    root = tmp_path_factory.mktemp("ds")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "PV", "1": "ART"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "file_ending": ".nii.gz", "numTraining": len(TR)}))
    source = write_case_files(tmp_path_factory.mktemp("src"), tiny_case())
    for split, cases in (("imagesTr", TR), ("imagesTs", TS)):
        (root / split).mkdir()
        for case in cases:
            shutil.copy(source["PV"], root / split / f"{case}_0000.nii.gz")
            shutil.copy(source["ART"], root / split / f"{case}_0001.nii.gz")
    (root / "masks").mkdir()
    for case in TR + TS:
        shutil.copy(source["label"], root / "masks" / f"{case}.nii.gz")
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("b") / "m.mpliver")


def test_split_and_case_filter_choose_the_cases(dataset):
    assert dataset_cases(dataset)[1:] == ("Ts", TS)  # imagesTs when it holds cases
    assert dataset_cases(dataset, "Tr")[1:] == dataset_cases(dataset, "imagesTr")[1:] == ("Tr", TR)
    assert dataset_cases(dataset, "Tr", ["liver_*"])[2] == ["liver_001", "liver_002"]
    assert dataset_cases(dataset, "Tr", ["other_003", "liver_002"])[2] == ["liver_002", "other_003"]
    with pytest.raises(InputError, match="no case of imagesTr/ matches 'liver_9'"):
        dataset_cases(dataset, "Tr", ["liver_001", "liver_9"])
    with pytest.raises(InputError, match="split must be Tr or Ts"):
        dataset_cases(dataset, "Val")


def _run(bundle, dataset, out, *extra):
    return main(["predict", "-m", str(bundle), "-i", str(dataset), "--out", str(out), "--liver-mask",
                 str(dataset / "masks"), "--device", "cpu", *extra])


def test_batch_filter_skip_and_overwrite(bundle, dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(bundle, dataset, out, "--split", "Tr", "--cases", "liver_*", "--save-probabilities") == 0
    captured = capsys.readouterr()
    assert "imagesTr: 2 predicted, 0 skipped (already done), 0 failed" in captured.out  # the result: stdout
    assert "mpliver predict" in captured.err and "imagesTr" not in captured.err  # logs: stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{c}{s}" for c in ("liver_001", "liver_002") for s in (
        ".nii.gz", "_uncertainty.nii.gz", "_probability.nii.gz", "_lesions.csv", "_lesions.json",
        "_lesions_notice.txt"))
    stamp = (out / "liver_001.nii.gz").stat().st_mtime_ns
    os.utime(out / "liver_001.nii.gz", ns=(stamp - 10**9, stamp - 10**9))
    old = (out / "liver_001.nii.gz").stat().st_mtime_ns
    # a rerun skips finished cases ...
    assert _run(bundle, dataset, out, "--split", "Tr", "--cases", "liver_*", "--save-probabilities") == 0
    captured = capsys.readouterr()
    assert "0 predicted, 2 skipped" in captured.out and "--overwrite to predict it again" in captured.err
    assert (out / "liver_001.nii.gz").stat().st_mtime_ns == old
    # ... and --overwrite predicts a finished case again
    assert _run(bundle, dataset, out, "--split", "Tr", "--cases", "liver_001", "--overwrite") == 0
    assert "1 predicted, 0 skipped" in capsys.readouterr().out
    assert (out / "liver_001.nii.gz").stat().st_mtime_ns > old


def test_default_split_is_imagesTs_and_a_bad_filter_is_one_line(bundle, dataset, tmp_path, capsys):
    assert _run(bundle, dataset, tmp_path / "out") == 0
    assert "imagesTs: 1 predicted" in capsys.readouterr().out
    assert (tmp_path / "out" / "test_001.nii.gz").exists()
    assert _run(bundle, dataset, tmp_path / "o2", "--cases", "nope*") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "no case of imagesTs/ matches 'nope*'" in err[-1]


def test_case_options_without_input_are_refused(bundle, dataset, tmp_path, capsys):
    pv = dataset / "imagesTs" / "test_001_0000.nii.gz"
    assert main(["predict", "-m", str(bundle), "--out", str(tmp_path), "--pv", str(pv), "--art", str(pv),
                 "--overwrite"]) == 2
    assert "choose cases of --input" in capsys.readouterr().err


def test_batch_warns_about_an_implausible_liver_and_strict_fails_the_case(bundle, dataset, tmp_path,
                                                                           capsys):
    from mpliver.io.nifti import read_nifti, write_nifti

    masks = tmp_path / "masks"
    shutil.copytree(dataset / "masks", masks)
    label, geom = read_nifti(masks / "test_001.nii.gz")
    write_nifti(masks / "test_001.nii.gz", np.ones_like(label), geom)  # every voxel "liver"
    args = ["predict", "-m", str(bundle), "-i", str(dataset), "--liver-mask", str(masks), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "implausible liver mask" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: case test_001:")
    assert "1 with an implausible liver mask" in captured.out
    doc = json.loads((tmp_path / "a" / "test_001_lesions.json").read_text())
    assert doc["liver_check"]["plausible"] is False and "border" in doc["liver_check"]["flags"]
    assert main([*args, "--out", str(tmp_path / "b"), "--strict"]) == 1  # the batch reports the failed case
    captured = capsys.readouterr()
    assert "0 predicted, 0 skipped (already done), 1 failed" in captured.out
    assert "refused: --strict" in captured.err and not (tmp_path / "b" / "test_001.nii.gz").exists()


def test_skipping_outputs_of_another_model_warns(bundle, dataset, tmp_path, capsys):
    other = tiny_bundle(tmp_path / "other.mpliver", seed=7)
    out = tmp_path / "out"
    assert _run(bundle, dataset, out) == 0
    doc = json.loads((out / "test_001_lesions.json").read_text())
    assert doc["models"] == [str(bundle.resolve())]
    capsys.readouterr()
    assert _run(bundle, dataset, out) == 0  # the same model: a plain skip
    assert "made by" not in capsys.readouterr().err
    assert _run(other, dataset, out) == 0  # another model: still skipped, but said so
    captured = capsys.readouterr()
    assert "0 predicted, 1 skipped" in captured.out
    line = [x for x in captured.err.splitlines() if "made by" in x]
    assert len(line) == 1 and str(bundle.resolve()) in line[0] and "--overwrite" in line[0]
