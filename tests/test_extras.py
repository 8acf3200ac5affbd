"""The nnU-Net extra: without it, its commands say in one line how to install it; the line names the versions
that are installed where it is."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from mpliver import extras
from mpliver.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [
    ["experiments", "nnunet", "DATASET", "--out", "EXP"],
    ["bench", "--peer", "nnunet"],
])
def test_without_the_extra_the_command_says_how_to_install_it(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(extras, "nnunet_available", lambda: False)
    argv = [str(tmp_path / a) if a in ("DATASET", "EXP") else a for a in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert "needs nnU-Net v2, which is not installed" in err
    assert "pip install 'mpliver[nnunet]' && pip install --no-deps nnunetv2==2.8.1" in err


def test_the_extra_holds_no_torch_torchvision_or_timm():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["nnunet"]
    names = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in extra}
    assert not names & {"torch", "torchvision", "timm", "nnunetv2", "dynamic-network-architectures"}
    assert {"blosc2", "scikit-image", "pandas"} <= names


def test_the_install_line_pins_what_is_installed():
    pytest.importorskip("nnunetv2", reason="the nnU-Net extra is not installed")
    assert extras.nnunet_available()
    for pin in extras.NNUNET_PACKAGES.split():
        name, version = pin.split("==")
        assert importlib.metadata.version(name) == version
