"""`mpliver evaluate` on an --out that cannot be written: one line naming the folder and the cause, before
any case is scored; on a disk that fills up while writing, the earlier tables stay whole."""

from __future__ import annotations

import mpliver.evaluation.evaluate as evaluate_mod
from helpers.faultfs import fill, make_read_only, tmpfs
from mpliver.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_read_only_out_is_refused_before_scoring(cohort, tmp_path, capsys, monkeypatch):
    scored = []
    real = evaluate_mod.evaluate_case_files

    def counting(*args, **kwargs):
        scored.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "evaluate_case_files", counting)
    with tmpfs(tmp_path / "fs") as fs:
        make_read_only(fs)
        assert main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(fs / "out")]) == 2
        line = _error(capsys)
        assert str(fs / "out") in line and "EROFS" in line
    assert scored == []


def test_full_disk_keeps_the_earlier_tables(cohort, tmp_path, capsys):
    with tmpfs(tmp_path / "fs", "256k") as fs:
        out = fs / "out"
        assert main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(out)]) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        fill(fs)
        assert main(["evaluate", str(cohort.preds), str(cohort.labels), "--out", str(out)]) == 2
        line = _error(capsys)
        assert str(out) in line and "ENOSPC" in line
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
