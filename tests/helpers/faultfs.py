"""Real failing file systems for write-failure tests: a small tmpfs that is full or read-only.

Mounting needs root (the CI and dev containers run as root); elsewhere the tests that need it are skipped
with the reason. Import as `from helpers.faultfs import ...`.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted at `path` (created); unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to test write failures ({done.stderr.strip() or 'needs root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def make_read_only(path: Path) -> None:
    """Remount the tmpfs at `path` read-only (root ignores chmod, so this is the real test)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(path: Path) -> Path:
    """Fill the file system holding `path` with one visible file until no byte is left; return that file."""
    filler = path / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler
