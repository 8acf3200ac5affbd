"""A tumour-only label, a case table entry without files and a misspelt tumour type get the same answer in
plan, preprocess, train, convert and inspect (issue 11 item 4): one error line, or one warning line where the
command can go on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.io.layout import tumor_type_spelling
from mpliver.io.nifti import read_nifti, write_nifti

COMMANDS = {
    "inspect": lambda ds, work: ["inspect", ds],
    "plan": lambda ds, work: ["plan", ds, "--folds", "2"],
    "preprocess": lambda ds, work: ["preprocess", ds, "--out", work / "cache", "--workers", "1",
                                    "--input-size", "64"],
    "convert": lambda ds, work: ["convert", ds, "--to", "nnunet", "--out", work / "nnunet"],
    "train": lambda ds, work: ["train", ds, "--out", work / "run", "optim.epochs=1",
                               "data.slices_per_epoch=8", "data.val_max_slices=8", "data.input_size=64",
                               f"data.cache={work / 'cache'}"],
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "ds"
    assert main(["phantom", str(root), "--cases", "5", "--shape", "64,64,16", "--spacing", "5,5,10",
                 "--no-previews", "--folds", "2", "--workers", "1"]) == 0
    return root


def _variant(cohort, tmp_path, kind):
    """A copy of the cohort with one planted fault: (dataset, the file the message must name, its text)."""
    ds = tmp_path / "ds"
    shutil.copytree(cohort, ds)
    meta_path = ds / "dataset.json"
    meta = json.loads(meta_path.read_text())
    if kind == "tumour_only":
        path = ds / "labelsTr" / "PHANTOM_0002.nii.gz"
        label, geom = read_nifti(path)
        assert np.any(label == 2)
        label[label == 1] = 0
        write_nifti(path, label, geom)
        tumour = np.count_nonzero(label == 2)
        return ds, path, f"label has {tumour} tumour voxel(s) (2) but no liver voxel (1)"
    if kind == "typo":
        meta["cases"]["PHANTOM_0003"]["tumor_type"] = "HCCC"
    elif kind == "listed_without_files":
        meta["cases"]["PHANTOM_0009"] = {"tumor_type": "HCC", "fold": 0}
    elif kind == "other_type":  # docs/method.md §2 allows other types: reported as they come
        meta["cases"]["PHANTOM_0003"]["tumor_type"] = "angiosarcoma"
    meta_path.write_text(json.dumps(meta))
    return ds, meta_path, EXPECTED.get(kind)


def _run(capsys, args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith(("error", "warning"))], err


EXPECTED = {"listed_without_files": "1 case(s) of the case table have no image files (PHANTOM_0009); ignored",
            "other_type": "tumour type(s) outside the table (cyst, FNH, HEM, HCC, METS): 'angiosarcoma' "
                          "(1 case(s)); each is reported as its own type",
            "typo": "case PHANTOM_0003: tumour type 'HCCC' is not in the table (cyst, FNH, HEM, HCC, METS), "
                    "misspelt 'HCC'"}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["tumour_only", "typo"])
def test_same_error_in_every_command(cohort, tmp_path, capsys, command, kind):
    ds, culprit, expected = _variant(cohort, tmp_path, kind)
    before = (ds / "dataset.json").read_text()
    code, lines, err = _run(capsys, COMMANDS[command](ds, tmp_path))
    assert code == 2, err
    assert lines == [f"error: {culprit}: " + lines[0].split(f"{culprit}: ", 1)[-1]], err
    assert expected in lines[0] and err.strip().splitlines()[-1] == lines[0]
    assert (ds / "dataset.json").read_text() == before  # plan wrote nothing


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "train"])
@pytest.mark.parametrize("kind", ["listed_without_files", "other_type"])
def test_legal_oddities_are_one_warning(cohort, tmp_path, capsys, command, kind):
    ds, meta_path, expected = _variant(cohort, tmp_path, kind)
    code, lines, err = _run(capsys, COMMANDS[command](ds, tmp_path))
    assert code == 0, err
    assert lines == [f"warning: {meta_path}: {expected}"]
    if command == "plan" and kind == "other_type":
        case = json.loads(meta_path.read_text())["cases"]["PHANTOM_0003"]
        assert case["tumor_type"] == "angiosarcoma" and case["fold"] in (0, 1)


@pytest.mark.slow  # trains one tiny epoch
def test_listed_case_without_files_warns_once_in_train(cohort, tmp_path, capsys):
    ds, meta_path, _ = _variant(cohort, tmp_path, "listed_without_files")
    code, lines, err = _run(capsys, COMMANDS["train"](ds, tmp_path))
    assert code == 0, err
    assert lines == [f"warning: {meta_path}: 1 case(s) of the case table have no image files (PHANTOM_0009); "
                     "ignored"]


def test_convert_refuses_a_tumour_only_label(cohort, tmp_path, capsys):
    """Appending a case whose label has tumour but no liver: one line naming the label, nothing added."""
    ds, _, _ = _variant(cohort, tmp_path, "listed_without_files")
    label, geom = read_nifti(cohort / "labelsTr" / "PHANTOM_0002.nii.gz")
    bad = write_nifti(tmp_path / "tumour_only.nii.gz", np.where(label == 2, 2, 0).astype(np.uint8), geom)
    images = cohort / "imagesTr"
    code, lines, err = _run(capsys, ["convert", "--pv", images / "PHANTOM_0002_0000.nii.gz", "--art",
                                     images / "PHANTOM_0002_0001.nii.gz", "--label", bad, "--case-id", "NEW",
                                     "--out", ds])
    assert code == 2 and lines[-1].startswith(f"error: {bad}: label has")
    assert err.strip().splitlines()[-1] == lines[-1]
    assert not (ds / "imagesTr" / "NEW_0000.nii.gz").exists()


@pytest.mark.parametrize("name, answer", [
    ("HCC", ("known", "HCC")), ("cyst", ("known", "cyst")), ("HCCC", ("misspelt", "HCC")),
    ("hcc", ("misspelt", "HCC")), ("Mets", ("misspelt", "METS")), ("metastasis", ("misspelt", "METS")),
    ("cyts", ("misspelt", "cyst")), ("cholangiocarcinoma", ("other", None)), ("ICC", ("other", None)),
    ("angiosarcoma", ("other", None)),
])
def test_tumour_type_spelling(name, answer):
    assert tumor_type_spelling(name) == answer
