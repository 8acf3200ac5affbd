"""The pre-processing cache under faults: each finished case is in the manifest at once (also with worker
processes), a case written but not yet recorded is taken back, and `.lock` keeps a second run off the
cache (refused in one line, or waited for) and is taken over from a dead holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mpliver.data.cache as cache_mod
from helpers.prep_scene import write_scene_dataset
from mpliver.cli import main
from mpliver.data.cache import preprocess_dataset, read_manifest
from mpliver.data.config import PreprocessConfig
from mpliver.io.lock import FolderBusyError, FolderLock

FAST = PreprocessConfig(input_size=64, registration="none", margin_mm=5.0)
REPO = Path(__file__).resolve().parents[2]
_REAL_PROCESS_CASE = cache_mod._process_case


@pytest.fixture()
def dataset(tmp_path):
    return write_scene_dataset(tmp_path / "ds", num_cases=3)


def _last_case_waits_for_the_manifest(root, case, config, out, key, sources, single_thread):
    """Worker stand-in: the last case starts only once another case is recorded in the manifest (or after
    60 s), and says which it saw in a file beside the cache."""
    if case == "SCENE_002":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not read_manifest(out).get("cases"):
            time.sleep(0.05)
        Path(out, "..", "seen.json").write_text(json.dumps(sorted(read_manifest(out).get("cases", {}))))
    return _REAL_PROCESS_CASE(root, case, config, out, key, sources, single_thread)


@pytest.mark.slow
def test_each_case_is_recorded_as_soon_as_a_worker_finishes_it(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "_process_case", _last_case_waits_for_the_manifest)
    out = tmp_path / "cache"
    start = time.monotonic()
    summary = preprocess_dataset(dataset, out, FAST, workers=2)
    assert sorted(summary.built) == ["SCENE_000", "SCENE_001", "SCENE_002"]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen and "SCENE_002" not in seen  # recorded while the last case was still running
    assert time.monotonic() - start < 60


def test_a_case_written_but_not_recorded_is_taken_back(dataset, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(dataset, out, FAST, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["cases"].pop("SCENE_001")  # a kill between the case's rename and the manifest update
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = preprocess_dataset(dataset, out, FAST, workers=1)
    assert again.built == [] and sorted(again.reused) == ["SCENE_000", "SCENE_001", "SCENE_002"]
    assert json.loads((out / "manifest.json").read_text())["cases"]["SCENE_001"] == entry


_HOLDER = """
import sys, time
from mpliver.io.lock import FolderLock
lock = FolderLock(sys.argv[1], "preprocess run").acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(seconds)],
                            stdout=subprocess.PIPE,
                            env=env, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_a_locked_cache_is_refused_in_one_line(dataset, tmp_path, capsys):
    out = tmp_path / "cache"
    holder = _holder(out, 60)
    try:
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
            preprocess_dataset(dataset, out, FAST, workers=1)
        assert main(["preprocess", str(dataset), "--out", str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {out}: in use by another preprocess run (pid {holder.pid}")
        assert not (out / "manifest.json").exists()  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_of_a_killed_run_is_taken_over(dataset, tmp_path):
    out = tmp_path / "cache"
    holder = _holder(out, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / ".lock").exists()  # left behind by the kill
    summary = preprocess_dataset(dataset, out, FAST, workers=1)
    assert len(summary.built) == 3
    assert not (out / ".lock").exists()


def test_waiting_for_the_lock(dataset, tmp_path):
    out = tmp_path / "cache"
    holder = _holder(out, 1.0)
    try:
        summary = preprocess_dataset(dataset, out, FAST, workers=1, wait_for_lock=60)
        assert len(summary.built) == 3 and holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with FolderLock(tmp_path, "x"), pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
        FolderLock(tmp_path, "x").acquire()
    with FolderLock(tmp_path, "x"):  # released: free again
        pass


def test_a_file_system_without_flock_runs_unlocked_with_a_warning_and_other_faults_are_one_line(
        tmp_path, monkeypatch):
    import errno
    import fcntl

    from mpliver.errors import InputWarning, MpliverError

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(InputWarning, match="cannot lock files .*No locks available.*would not be stopped"):
        with FolderLock(tmp_path / "run", "cross-validation"):
            assert not (tmp_path / "run" / ".lock").exists()

    def broken(fd, op):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(MpliverError, match=r"cannot lock the folder \(Input/output error\)"):
        FolderLock(tmp_path / "run", "cross-validation").acquire()
    monkeypatch.undo()

    def read_only(path, flags, mode=0o777):  # what a read-only folder answers (root is never refused)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(MpliverError, match=r"cannot write the lock file \.lock \(Permission denied\)"):
        FolderLock(tmp_path / "run", "x").acquire()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_killing_only_the_main_process_ends_its_workers_and_frees_the_cache(dataset, tmp_path):
    out = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "mpliver", "preprocess", str(dataset), "--out", str(out), "--workers", "2",
           "--registration", "none", "--input-size", "64"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not read_manifest(out).get("cases"):
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers are orphaned
        proc.wait()
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid)  # the workers ended with their parent
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0  # the lock is free again
    assert sorted(read_manifest(out)["cases"]) == ["SCENE_000", "SCENE_001", "SCENE_002"]
