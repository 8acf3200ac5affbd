"""User-facing messages: errors that become a single line on the command line, naming the file and the
problem, and the research notice that every output and the command line carry."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Iterable
from pathlib import Path

RESEARCH_NOTICE = "mpliver research software, not for clinical use"  # fits a NIfTI header's 80-byte descrip


class MpliverError(Exception):
    """An error the user can act on. The CLI prints `error: <message>` and exits with status 2."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(MpliverError):
    """Bad input data: missing or unreadable files, wrong geometry, non-HU values, NaNs, empty masks."""


class DatasetError(InputError):
    """A dataset folder that does not follow the case layout (docs/method.md §2)."""


class InputWarning(UserWarning):
    """Legal but suspicious input the command goes on with; the CLI prints it as one `warning:` line."""


class ConfigError(MpliverError):
    """An invalid configuration, preset or override."""


class OutputError(MpliverError):
    """An output that cannot be written: no space, a read-only file system, a file in the way, no access."""


def check_known_fields(cls: type, keys: Iterable[str], what: str) -> None:
    """ConfigError naming every key that is not a field of the dataclass `cls` (for `from_dict` readers)."""
    unknown = sorted(set(keys) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(unknown)}")


def os_error_cause(exc: OSError) -> tuple[str | None, str]:
    """(errno name or None, cause text) of an OSError: what every one-line report of it names."""
    return errno.errorcode.get(exc.errno or 0), exc.strerror or str(exc) or type(exc).__name__


def describe_os_error(exc: OSError) -> str:
    """'PATH: cause (ERRNO)' for an OSError the code did not wrap, e.g. 'out/x.nii.gz: No space left on
    device (ENOSPC)'."""
    code, cause = os_error_cause(exc)
    cause += f" ({code})" if code else ""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause
