"""Failed writes end cleanly: --out is checked before any inference, an OSError while writing is one line
naming the path and the cause, and a case's outputs are replaced as a set (a full disk keeps the earlier
set). Also `bundle` refusing to overwrite, and the CLI's one line for an OSError no code wrapped."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import mpliver.inference.predict as predict_mod
from helpers.faultfs import fill, make_read_only, tmpfs
from mpliver.cli import main
from mpliver.errors import OutputError
from mpliver.inference.predict import output_paths, write_outputs


def _args(bundle_path, files, out):
    return ["predict", "--model", str(bundle_path), "--out", str(out), "--pv", str(files["PV"]), "--art",
            str(files["ART"]), "--liver-mask", str(files["label"]), "--device", "cpu"]


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:"), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_full_disk_keeps_the_earlier_set(result, tmp_path):
    with tmpfs(tmp_path / "fs", "2m") as fs:
        out = fs / "out"
        paths = write_outputs(result, out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        assert sorted(before) == sorted(p.name for p in paths.values())
        fill(fs)
        with pytest.raises(OutputError) as info:
            write_outputs(result, out)
        assert str(out) in str(info.value) and "ENOSPC" in str(info.value)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # intact, no temporary left
        # on a fresh folder a full disk leaves nothing at all
        with pytest.raises(OutputError, match="ENOSPC"):
            write_outputs(result, fs / "fresh")
        assert not list((fs / "fresh").iterdir())


def test_a_failure_of_the_last_output_leaves_no_partial_set(result, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    import mpliver.io.nifti as nifti

    calls = []
    real = nifti.write_nifti

    def label_fails(path, array, *args, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "CASE.nii.gz":  # the label map, written after the uncertainty and the report
            no_room()
        return real(path, array, *args, **kwargs)

    monkeypatch.setattr(nifti, "write_nifti", label_fails)
    with pytest.raises(OSError):
        write_outputs(result, out)
    assert calls == ["CASE_uncertainty.nii.gz", "CASE.nii.gz"]
    assert list(out.iterdir()) == []  # neither the uncertainty map nor the report without the label map


def test_cli_read_only_out_fails_before_inference(bundle_path, files, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the inference ran before --out was checked")

    monkeypatch.setattr(predict_mod, "predict", never)
    with tmpfs(tmp_path / "fs") as fs:
        make_read_only(fs)
        assert main(_args(bundle_path, files, fs / "out")) == 2
        line = _last_error(capsys)
        assert str(fs / "out") in line and "EROFS" in line


def test_cli_out_is_a_file(bundle_path, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict_mod, "predict", lambda *a, **k: pytest.fail("inference ran"))
    (tmp_path / "out").write_text("a file")
    assert main(_args(bundle_path, files, tmp_path / "out")) == 2
    assert "is a file, not a folder" in _last_error(capsys)


def test_cli_full_disk_while_writing_is_one_line(bundle_path, files, tmp_path, capsys, monkeypatch):
    real_write = predict_mod.write_outputs

    def fill_then_write(*args, **kwargs):  # --out passed its check; the disk fills up during the inference
        fill(fs)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(predict_mod, "write_outputs", fill_then_write)
    with tmpfs(tmp_path / "fs", "2m") as fs:
        out = fs / "out"
        assert main(_args(bundle_path, files, out)) == 2
        line = _last_error(capsys)
        assert str(out) in line and "ENOSPC" in line
        assert list(out.iterdir()) == []
        assert sorted(p.name for p in fs.iterdir()) == ["filler.bin", "out"]


def test_bundle_refuses_to_overwrite_without_the_flag(tmp_path, capsys):
    existing = tmp_path / "model.mpliver"
    existing.write_bytes(b"an earlier bundle")
    assert main(["bundle", str(tmp_path / "no_run"), "--out", str(existing)]) == 2
    assert _last_error(capsys) == f"error: {existing}: exists; pass --overwrite to replace it"
    # with --overwrite the command goes on (and stops at the missing run, leaving the file)
    assert main(["bundle", str(tmp_path / "no_run"), "--out", str(existing), "--overwrite"]) == 2
    assert "not a training run folder" in _last_error(capsys)
    assert existing.read_bytes() == b"an earlier bundle"


def test_an_unwrapped_oserror_is_one_line(tmp_path, capsys, monkeypatch):
    import mpliver.experiments.report as report

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/report/index.md")

    monkeypatch.setattr(report, "write_report", denied)
    assert main(["report", str(tmp_path)]) == 2
    assert _last_error(capsys) == "error: /somewhere/report/index.md: Permission denied (EACCES)"


def test_output_paths_are_what_is_written(result, tmp_path):
    paths = write_outputs(result, tmp_path)
    assert paths == output_paths(tmp_path, "CASE")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_bundle_on_a_read_only_disk_names_the_file(tmp_path, capsys):
    with tmpfs(tmp_path / "fs") as fs:
        make_read_only(fs)
        target = fs / "m.mpliver"
        assert main(["bundle", str(tmp_path / "no_run"), "--out", str(target)]) == 2
        assert _last_error(capsys) == f"error: {target}: cannot write (EROFS: Read-only file system)"
