"""Run-folder metadata: git revision (read back independently from .git), environment, config and seed."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
import yaml

from mpliver.training.config import load_config
from mpliver.training.run_info import environment, git_revision, write_run_info


def test_git_revision_outside_git_is_unknown(tmp_path):
    assert git_revision(tmp_path) == {"commit": "unknown", "dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_revision_and_dirty_flag(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    # independent reading of the commit: follow .git/HEAD to the branch ref file
    ref = (tmp_path / ".git" / "HEAD").read_text().split(":", 1)[1].strip()
    sha = (tmp_path / ".git" / ref).read_text().strip()
    assert git_revision(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "a.txt").write_text("two")
    assert git_revision(tmp_path) == {"commit": sha, "dirty": True}


def test_write_run_info(tmp_path):
    cfg = load_config("cpu-small", ["train.seed=11"])
    info = write_run_info(tmp_path / "run", cfg, seed=11, device="cpu", extra={"fold_info": {"fold": 2}})
    saved = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["seed"] == 11 and saved["fold_info"] == {"fold": 2}
    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["python"].count(".") == 2
    assert saved["config"]["train"]["seed"] == 11
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == cfg.to_dict()
    assert environment("cpu")["gpu"] is None


def test_read_run_info_reads_what_was_written_and_names_a_broken_file(tmp_path):
    from mpliver.errors import InputError
    from mpliver.training.config import Config
    from mpliver.training.run_info import read_run_info, write_run_info

    assert read_run_info(tmp_path) == {}  # a run written before run_info.json existed
    written = write_run_info(tmp_path, Config(), seed=3, extra={"fold_info": {"dataset": "/data/ds"}})
    assert read_run_info(tmp_path) == written
    for broken in ('{"seed": 3', "[1, 2]", b"\xff\xfe"):
        path = tmp_path / "run_info.json"
        path.write_bytes(broken if isinstance(broken, bytes) else broken.encode())
        with pytest.raises(InputError, match="run_info.json: .*remove it or train the run again"):
            read_run_info(tmp_path)
