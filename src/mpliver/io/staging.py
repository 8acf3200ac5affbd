"""Whole-folder writes: build a folder under a hidden staging name beside its target, then swap it into place,
so a failure or a kill never leaves a half-written dataset or series behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def make_staging(target: Path) -> Path:
    """A new empty hidden folder beside `target` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def normal_permissions(folder: Path) -> None:
    """mkdtemp / mkstemp create owner-only entries; give the tree the usual umask-based permissions."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def swap_in(stage: Path, target: Path) -> None:
    """Put the finished staging folder at `target`, replacing whatever was there (removed afterwards)."""
    normal_permissions(stage)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "x")
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
