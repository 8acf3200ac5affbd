"""Atomic writes on real failing file systems (a full and a read-only tmpfs), the clean-up of what a killed
writer left behind (only dead writers'), and sets of files that are replaced together or not at all."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mpliver.io.atomic as atomic
from helpers.faultfs import fill, make_read_only, tmpfs
from mpliver.errors import OutputError
from mpliver.io.atomic import (
    check_writable,
    commit_set,
    make_staging,
    remove_stale_temps,
    staged_folder,
    temp_path,
    write_text_atomic,
)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_full_disk_keeps_the_old_file_and_names_path_and_cause(tmp_path):
    with tmpfs(tmp_path / "fs", "64k") as fs:
        target = fs / "summary.json"
        write_text_atomic(target, "old")
        fill(fs)
        with pytest.raises(OutputError) as info:
            write_text_atomic(target, "x" * 100_000)
        message = str(info.value)
        assert message.startswith(f"{target}: cannot write (ENOSPC") and "\n" not in message
        assert target.read_text() == "old"
        assert _hidden(fs) == []


def test_read_only_file_system(tmp_path):
    with tmpfs(tmp_path / "fs") as fs:
        write_text_atomic(fs / "a.txt", "old")
        make_read_only(fs)
        with pytest.raises(OutputError, match=r"a\.txt: cannot write \(EROFS"):
            write_text_atomic(fs / "a.txt", "new")
        with pytest.raises(OutputError, match="EROFS"):
            check_writable(fs / "out")
        assert (fs / "a.txt").read_text() == "old"


def test_check_writable_finds_each_fault_before_work(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(a_file)
    with pytest.raises(OutputError, match="a file is in the way") as info:
        check_writable(a_file / "sub" / "out")
    assert str(info.value).startswith(str(a_file))
    with pytest.raises(OutputError, match="pass --overwrite"):
        check_writable(a_file, "file", overwrite=False)
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path, "file")
    assert check_writable(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # creates nothing, leaves no probe
    with tmpfs(tmp_path / "fs", "64k") as fs:
        fill(fs)
        with pytest.raises(OutputError, match="ENOSPC"):
            check_writable(fs / "out")


def test_only_dead_writers_leftovers_are_removed(tmp_path):
    dead, live = _dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = atomic.HOST_TAG
        other = "000000" if host != "000000" else "111111"
        names = {
            f".x.nii.gz.tmp-{dead}-{host}-0123abcd.nii.gz": "dead file",
            f".CASE.staging-{dead}-{host}-89abcdef": "dead folder",
            f".CASE.old-{dead}-{host}-00000000": "dead folder",
            f".y.json.tmp-{live.pid}-{host}-0123abcd.json": "live file",
            f".CASE2.staging-{live.pid}-{host}-0123abcd": "live folder",
            f".z.json.tmp-{os.getpid()}-{host}-0123abcd.json": "this process",
            f".w.json.tmp-{dead}-{other}-0123abcd.json": "another host's writer",
            ".hidden": "not ours", ".x.tmp-abc": "not ours", "CASE.nii.gz": "output",
        }
        for name, what in names.items():
            if "folder" in what:
                (tmp_path / name).mkdir()
                (tmp_path / name / "inner.npy").write_bytes(b"1")
            else:
                (tmp_path / name).write_text(what)
        removed = remove_stale_temps(tmp_path)
        assert sorted(p.name for p in removed) == sorted(n for n, w in names.items() if w.startswith("dead"))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, w in names.items()
                                                                    if not w.startswith("dead"))
    finally:
        live.kill()
        live.wait()


def test_a_write_removes_dead_leftovers_in_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_CLEANED", {})  # as in a new process
    stale = tmp_path / f".a.txt.tmp-{_dead_pid()}-{atomic.HOST_TAG}-0123abcd.txt"
    stale.write_text("half")
    write_text_atomic(tmp_path / "a.txt", "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_temp_names_carry_the_pid_and_the_suffix(tmp_path):
    name = temp_path(tmp_path / "CASE.nii.gz").name
    assert name.startswith(f".CASE.nii.gz.tmp-{os.getpid()}-{atomic.HOST_TAG}-") and name.endswith(".nii.gz")
    assert atomic.TEMP_NAME.match(name)["pid"] == str(os.getpid())
    assert atomic.TEMP_NAME.match(temp_path(tmp_path / "CASE", "staging").name)["kind"] == "staging"


def _make_set(folder: Path, names: list[str], text: str) -> None:
    for name in names:
        (folder / name).write_text(f"{text} {name}")


@pytest.mark.parametrize("fail_at", range(7))
def test_a_set_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch, fail_at):
    names = ["CASE_uncertainty.nii.gz", "CASE_lesions.csv", "CASE.nii.gz"]
    out = tmp_path / "out"
    out.mkdir()
    _make_set(out, names, "old")
    stage = make_staging(out / "CASE")
    _make_set(stage, names, "new")
    real, calls = os.replace, []

    def failing(src, dst):  # the fail_at-th rename fails as on a full or read-only disk
        calls.append(dst)
        if len(calls) == fail_at + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    if fail_at < 6:  # 3 moves aside + 3 moves in
        with pytest.raises(OutputError, match="ENOSPC"):
            commit_set(stage, out, names)
        expect = "old"
    else:
        commit_set(stage, out, names)
        expect = "new"
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: f"{expect} {n}" for n in names}


def test_staged_folder_failure_leaves_the_target(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(target) as stage:
        (stage / "new.txt").write_text("new")
        raise RuntimeError("failed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with staged_folder(target) as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and _hidden(tmp_path) == []
