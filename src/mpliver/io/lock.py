"""An exclusive lock on a folder, so that two runs never write one cache at the same time.

The lock is `FOLDER/.lock` held with `flock`. The kernel drops it when the holder dies, so a lock left by a
killed process is taken over by the next run; the file names the holder (PID, host, start) for the message.
The holder removes the file when it is done; a waiter checks that the file it locked is still the one in
place, so that the removal cannot let two runs in.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import time
import warnings
from pathlib import Path

from mpliver.errors import InputWarning, MpliverError

LOCK_NAME = ".lock"
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}  # flock unsupported here


class FolderBusyError(MpliverError):
    """The folder is locked by another live run."""


class FolderLock:
    """`with FolderLock(folder, 'preprocess'):` holds the folder's lock; a second holder waits up to `timeout`
    seconds (0: refuse at once, None: wait as long as it takes), then gets a `FolderBusyError`."""

    def __init__(self, folder: str | Path, what: str = "run", timeout: float | None = 0.0):
        self.folder, self.what, self.timeout = Path(folder), what, timeout
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict:
        """What the lock file says about its holder ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise MpliverError(f"cannot write the lock file {LOCK_NAME} ({exc.strerror})",
                                   self.folder) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if deadline is not None and time.monotonic() >= deadline:
                    info = self.holder()
                    who = f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('started', '?')}" \
                        if "pid" in info else "another process"
                    what = info.get("what", self.what)  # the holder's own words
                    raise FolderBusyError(f"in use by another {what} ({who}); wait for it to finish or "
                                          "use another folder", self.folder) from None
                time.sleep(0.2)
                continue
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_FLOCK:
                    raise MpliverError(f"cannot lock the folder ({exc.strerror})", self.folder) from None
                # e.g. Lustre without -o flock, some NFS/SMB mounts: run unlocked, and say so
                self.path.unlink(missing_ok=True)
                warnings.warn(InputWarning(
                    f"{self.folder}: this file system cannot lock files ({exc.strerror}); a second "
                    f"{self.what} into this folder would not be stopped"), stacklevel=2)
                return self
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:  # the previous holder removed the file after we opened it
                os.close(fd)
                continue
            record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                      "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(record) + "\n").encode())
            self._fd = fd
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still holding the lock: a waiter re-checks the inode
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
