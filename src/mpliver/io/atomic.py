"""Atomic writes of files, folders and sets of files, and the clean-up of what a killed writer left behind.

Everything is first written under a hidden temporary name beside its target (same file system, so the
final `os.replace` is atomic): `.NAME.tmp-PID-HOST-RAND` for a file, `.NAME.staging-PID-HOST-RAND` for a
folder being built and `.NAME.old-PID-HOST-RAND` for what it replaces. A process killed with -9 leaves such
names behind; the first write of a later process into the same folder removes those of this host whose PID no
longer runs, and never those of a live writer (nor of another host, whose PIDs cannot be checked).
An `OSError` while writing becomes an `OutputError` naming the target and the cause (one line on the CLI).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mpliver.errors import OutputError, os_error_cause

TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>tmp|staging|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-[0-9a-f]{8}(?:\..*)?$")
# a PID means something on its own host only: on a shared file system, other hosts' writers are left alone
HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_CLEANED: dict[str, float] = {}  # folder -> when this process last cleaned it
CLEAN_EVERY_S = 60.0  # a long-lived process cleans a folder again after this long


# ---- temporary names and their clean-up --------------------------------------------------------------------


def temp_path(target: str | Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside `target` carrying this process's PID and host; a `tmp` file keeps the final
    suffix (e.g. `.nii.gz`) so that writers choosing a format by extension still work."""
    target = Path(target)
    suffix = "".join(target.suffixes) if kind == "tmp" else ""
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{HOST_TAG}-{secrets.token_hex(4)}{suffix}"


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie (a killed process its parent has not reaped)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose writer process (on this host) is dead;
    return them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match is None or match["host"] != HOST_TAG or pid_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _clean_once(folder: Path) -> None:
    """`remove_stale_temps` on the first write into `folder` (and once a minute after): not on every write,
    which would scan a folder of N outputs N times."""
    key, now = os.path.abspath(folder), time.monotonic()
    if now - _CLEANED.get(key, -CLEAN_EVERY_S) >= CLEAN_EVERY_S:
        _CLEANED[key] = now
        remove_stale_temps(folder)


# ---- errors ------------------------------------------------------------------------------------------------


def output_error(target: str | Path, exc: OSError) -> OutputError:
    """`OutputError` for `target` naming the cause, e.g. 'cannot write (ENOSPC: No space left on device)'."""
    code, cause = os_error_cause(exc)
    return OutputError(f"cannot write ({code + ': ' if code else ''}{cause})", target)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _file_in_the_way(folder)
        raise OutputError(f"cannot create {folder}: a file is in the way", blocker) from None
    except OSError as exc:
        raise output_error(folder, exc) from None


def _file_in_the_way(folder: Path) -> Path:
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            return p
    return folder


def check_writable(path: str | Path, kind: str = "folder", overwrite: bool = True) -> Path:
    """Check, before any long work, that output `path` (a folder, or a file with `kind='file'`) can be
    written, creating nothing: a small probe file is written and removed in the folder, or in its nearest
    existing parent (the same file system). A file in the way, an existing file without `overwrite`, a
    read-only or full file system or a missing permission are `OutputError`s."""
    path = Path(path)
    folder = path if kind == "folder" else path.parent
    if kind == "folder" and path.exists() and not path.is_dir():
        raise OutputError("is a file, not a folder (the output must be a folder)", path)
    if kind == "file":
        if path.is_dir():
            raise OutputError("is a folder; give the file to write", path)
        if path.exists() and not overwrite:
            raise OutputError("exists; pass --overwrite to replace it", path)
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise OutputError(f"cannot create {folder}: a file is in the way", existing)
    probe = temp_path(existing / "probe")
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise output_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return path


# ---- files -------------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    An `OSError` (from the writer inside the block or from the rename) becomes an `OutputError` for `path`.
    `durable` also flushes the file and the rename to disk (fsync), for checkpoints.
    """
    path = Path(path)
    _mkdir(path.parent)
    _clean_once(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # the final file gets the usual permissions
            if durable:
                _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            with contextlib.suppress(OSError):  # not possible on every platform
                _fsync(path.parent)
    except OSError as exc:
        _discard(tmp)
        raise output_error(path, exc) from None
    except BaseException:
        _discard(tmp)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a temporary file, quietly (on a read-only file system even that fails)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---- folders -----------------------------------------------------------------------------------------------


def make_staging(target: str | Path) -> Path:
    """A new empty hidden folder beside `target` (same file system, so the final rename is atomic)."""
    target = Path(target)
    _mkdir(target.parent)
    _clean_once(target.parent)
    stage = temp_path(target, "staging")
    try:
        stage.mkdir()
    except OSError as exc:
        raise output_error(target, exc) from None
    return stage


def normal_permissions(folder: Path) -> None:
    """Temporary entries may be owner-only; give the tree the usual umask-based permissions."""
    umask = _umask()
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def swap_in(stage: Path, target: Path) -> None:
    """Put the finished staging folder at `target`, replacing whatever was there (removed afterwards)."""
    normal_permissions(stage)
    old = None
    try:
        if target.exists() or target.is_symlink():
            old = temp_path(target, "old")
            os.replace(target, old)
        os.replace(stage, target)
    except OSError as exc:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise output_error(target, exc) from None
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it replaces `target`, on failure it is
    removed and `target` is left as it was."""
    target = Path(target)
    stage = make_staging(target)
    try:
        yield stage
        swap_in(stage, target)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise output_error(target, exc) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def commit_set(stage: Path, folder: Path, names: Sequence[str]) -> list[Path]:
    """Move the files `names` from the staging folder `stage` into `folder`, as one set.

    The earlier versions are first moved aside and the new files moved in in the given order (put the
    file that marks a finished set last); if a move fails, the earlier set is put back and the error raised,
    so `folder` holds either the earlier set or the new one. `stage` is removed in both cases.
    """
    folder = Path(folder)
    backup = temp_path(folder / names[-1], "old")
    moved: list[str] = []
    saved: list[str] = []
    name = names[0]
    try:
        backup.mkdir()
        for name in reversed(names):  # the set's marker leaves first: a kill never shows a mixed set as done
            if (folder / name).exists():
                os.replace(folder / name, backup / name)
                saved.append(name)
        for name in names:
            os.replace(stage / name, folder / name)
            moved.append(name)
    except OSError as exc:
        for name in moved:
            with contextlib.suppress(OSError):
                os.replace(folder / name, stage / name)
        for name in saved:
            with contextlib.suppress(OSError):
                os.replace(backup / name, folder / name)
        with contextlib.suppress(OSError):
            backup.rmdir()  # kept (with the earlier files) if any could not be put back
        raise output_error(folder / name, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(backup, ignore_errors=True)
    return [folder / name for name in names]
