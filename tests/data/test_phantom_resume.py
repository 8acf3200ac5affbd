"""`phantom` interrupted and run again: the finished cases are kept (not rewritten) and the result equals an
uninterrupted run; a dead run's temporary files are gone."""

from __future__ import annotations

import gzip
import json
import os

import pytest

import mpliver.io.atomic as atomic
from mpliver.data.phantom import write_cohort
from mpliver.data.phantom.config import PhantomConfig

TINY = PhantomConfig(shape=(48, 48, 12), spacing=(6.0, 6.0, 12.0))


def _contents(root):
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(root))
            out[rel] = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
    return out


def _stop_after(n):
    def progress(done, total):
        if done == n:
            raise KeyboardInterrupt  # stands in for a kill: the run stops between two cases
    return progress


def test_a_rerun_keeps_finished_cases_and_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    reference = write_cohort(tmp_path / "ref", 5, seed=4, config=TINY, workers=1)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_cohort(out, 5, seed=4, config=TINY, progress=_stop_after(2), workers=1)
    records = sorted(p.name for p in (out / ".phantom-done").iterdir())  # written by the worker, per case
    assert records == ["PHANTOM_0000.json", "PHANTOM_0001.json"]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("PHANTOM_000[01]*") if p.suffix != ".json"}
    assert len(finished) == 2 * 7  # two images, two labels, two structure maps and a preview per case
    dead = out / "imagesTr" / f".PHANTOM_0002_0000.nii.gz.tmp-999999999-{atomic.HOST_TAG}-0123abcd.nii.gz"
    dead.write_bytes(b"half")  # as a killed writer leaves it (no such PID)
    monkeypatch.setattr(atomic, "_CLEANED", {})  # the rerun is a new process
    write_cohort(out, 5, seed=4, config=TINY, workers=1)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not rewritten
    assert _contents(out) == _contents(reference)
    assert not [p for p in out.rglob(".*")]


def test_a_record_of_another_cohort_is_not_reused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_cohort(out, 5, seed=4, config=TINY, progress=_stop_after(2), workers=1)
    stamp = (out / "labelsTr" / "PHANTOM_0000.nii.gz").stat().st_mtime_ns
    write_cohort(out, 5, seed=5, config=TINY, workers=1, overwrite=True)
    assert (out / "labelsTr" / "PHANTOM_0000.nii.gz").stat().st_mtime_ns != stamp
    assert json.loads((out / "dataset.json").read_text())["synthetic"]["seed"] == 5
    assert os.path.exists(out / "previews" / "PHANTOM_0004.png")


@pytest.mark.slow
def test_workers_end_when_the_run_is_killed_and_a_rerun_completes(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mpliver", "phantom", str(out), "--cases", "6", "--workers", "2", "--shape",
           "48,48,12", "--spacing", "6,6,12", "--no-previews"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("labelsTr/*.nii.gz")):
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers are orphaned
        proc.wait()
        deadline = time.monotonic() + 30
        while group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive()
    finally:
        if group_alive():
            os.killpg(proc.pid, signal.SIGKILL)
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert len(json.loads((out / "dataset.json").read_text())["cases"]) == 6
    assert not list(out.rglob(".*"))
