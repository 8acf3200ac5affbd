"""DICOM studies: a folder tree or a .zip of several series, and the selector that picks one volume in it.

A DICOM source is written `PATH[::KEY=VALUE[,KEY=VALUE]]`, the same for every phase option and CSV column:
`series=` picks a series by SeriesInstanceUID, SeriesNumber or a piece of its SeriesDescription
(case-insensitive), `group=` an acquisition group inside the series, as numbered by `mpliver dicom ls`.
Example: `--pv study.zip::series=4,group=2`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pydicom

from mpliver.errors import InputError
from mpliver.io.dicom_scan import ScannedSeries, is_dicom_file, scan_folder

SELECTOR_SEP = "::"
_KEYS = ("series", "group")
_extracted: dict[tuple[str, int, int], Path] = {}


@dataclass(frozen=True)
class Selector:
    """Which series (`series`: UID, number or description text) and acquisition group (`group`) to read."""

    series: str | None = None
    group: str | None = None

    def spec(self) -> str:
        parts = [f"{k}={v}" for k, v in (("series", self.series), ("group", self.group)) if v]
        return SELECTOR_SEP + ",".join(parts) if parts else ""


def parse_source(source: str | Path) -> tuple[Path, Selector]:
    """`PATH::series=4,group=2` -> (PATH, Selector('4', '2')); a plain path has an empty selector."""
    text = str(source)
    path, sep, tail = text.partition(SELECTOR_SEP)
    if not sep:
        return Path(text), Selector()
    values: dict[str, str] = {}
    for item in tail.split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or key not in _KEYS or not value:
            raise InputError(f"bad selector '{item}' in '{text}': use PATH::series=UID|NUMBER|TEXT,group=N",
                             path)
        values[key] = value
    return Path(path), Selector(**values)


def is_multiframe_file(path: Path) -> bool:
    """A DICOM file holding a whole volume (enhanced CT: NumberOfFrames > 1)."""
    if not path.is_file() or not is_dicom_file(path):
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        return int(ds.get("NumberOfFrames") or 1) > 1
    except Exception:  # a damaged file is reported by the reader, with its name
        return False


def is_dicom_source(source: str | Path) -> bool:
    """A folder, a .zip, an enhanced multi-frame file or a path with a selector: what `read_dicom_series`
    reads."""
    path, selector = parse_source(source)
    return (path.is_dir() or path.suffix.lower() == ".zip" or selector != Selector()
            or is_multiframe_file(path))


def check_not_single_file(path: Path, what: str = "input") -> None:
    """Refuse one DICOM slice given where a series is expected (recognised by its preamble, any name)."""
    if path.suffix.lower() != ".zip" and is_dicom_file(path) and not is_multiframe_file(path):
        raise InputError(f"{what} is a single DICOM file; give the folder of its series ({path.parent})",
                         path)


def series_root(path: Path) -> Path:
    """What to scan: `path` itself (a folder or a multi-frame file), or a .zip extracted once per process
    into a temporary folder."""
    if path.is_dir() or is_multiframe_file(path):
        return path
    if not path.exists():
        raise InputError("DICOM folder or .zip not found", path)
    check_not_single_file(path)
    if path.suffix.lower() != ".zip":
        raise InputError("expected a DICOM series folder, a .zip of a study or a NIfTI file", path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, int(stat.st_mtime_ns))
    if key not in _extracted or not _extracted[key].is_dir():
        target = Path(tempfile.mkdtemp(prefix="mpliver-zip-"))
        atexit.register(shutil.rmtree, target, True)
        try:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(target)  # zipfile drops absolute paths and '..' from member names
        except (zipfile.BadZipFile, OSError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise InputError(f"unreadable .zip ({type(exc).__name__}: {exc})", path) from None
        _extracted[key] = target
    return _extracted[key]


def scan_study(path: Path) -> dict[str, ScannedSeries]:
    """Every image series under a folder or .zip, keyed by (possibly generated) SeriesInstanceUID."""
    root = series_root(path)
    series, skipped = scan_folder(root)
    if not series:
        note = f" ({skipped} non-DICOM file(s) skipped)" if skipped else ""
        raise InputError(f"no DICOM image files found{note}", path)
    return series


def series_label(s: ScannedSeries) -> str:
    """'4 "PV 1.5mm" (120 files)': what a one-line message says about a series."""
    number = "-" if s.number is None else str(s.number)
    desc = f' "{s.description}"' if s.description else ""
    return f"{number}{desc} ({len(s.files)} files, {s.uid})"


def series_key(study: dict[str, ScannedSeries], s: ScannedSeries) -> str:
    """The shortest `series=` value that picks `s` in `study`: its number when unique there, else its UID."""
    unique = s.number is not None and sum(x.number == s.number for x in study.values()) == 1
    return str(s.number) if unique else s.uid


def select_series(series: dict[str, ScannedSeries], wanted: str | None, path: Path) -> ScannedSeries:
    """The one series, or the one `wanted` names (UID, then SeriesNumber, then description text)."""
    if wanted is None:
        if len(series) == 1:
            return next(iter(series.values()))
        listing = "; ".join(series_label(s) for s in _ordered(series))
        raise InputError(f"{len(series)} series found, choose one with {path}{SELECTOR_SEP}series=NUMBER|UID|"
                         f"TEXT (see `mpliver dicom ls {path}`): {listing}", path)
    if wanted in series:
        return series[wanted]
    matches = [s for s in series.values() if str(s.number) == wanted.strip()]
    if not matches:
        text = wanted.strip().lower()
        matches = [s for s in series.values() if text and text in s.description.lower()]
        exact = [s for s in matches if s.description.lower() == text]
        matches = exact or matches
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(series_label(s) for s in _ordered(matches or list(series.values())))
    what = "matches several series" if matches else "matches no series"
    raise InputError(f"series '{wanted}' {what}: {listing}", path)


def _ordered(series) -> list[ScannedSeries]:
    items = series.values() if isinstance(series, dict) else series
    return sorted(items, key=lambda s: (s.number is None, s.number or 0, s.description, s.uid))
