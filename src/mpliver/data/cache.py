"""The on-disk cache of pre-processed cases (docs/method.md §4.5): memory-mapped arrays plus a manifest.

Layout:
    CACHE/manifest.json              what produced each case (config, source file hashes, mpliver version)
    CACHE/cases/CASE/images.npy      (P, T, n, n) float16 windowed phases on the PV grid (not masked)
    CACHE/cases/CASE/mask.npy        (T, n, n) uint8 liver mask;  label.npy (T, n, n) uint8 0/1/2
    CACHE/cases/CASE/lesions.npy     (T, n, n) numbered connected lesions, uint8 up to 255 lesions
                                     (only with tumour)
    CACHE/cases/CASE/meta.json       key, phases, halo, stored slices, tumour slices, SliceMapping,
                                     PV geometry, registration transforms (all the inverse mapping needs),
                                     and per lesion its size, CNR per phase and centre slices

A case is valid when its meta.json key equals the key computed from the current config, mpliver version and
the sha256 of every file it is built from; anything else is rebuilt, so a changed file invalidates that
case only and a changed parameter invalidates all. Each case is written into a staging folder and renamed
into place, and the manifest is rewritten atomically as soon as each case is done (with any number of
workers), so a killed run leaves no half-written case and a rerun redoes only the unfinished ones. A case
folder that is complete and valid but missing from the manifest (a kill between the two) is taken back
from its meta.json. `CACHE/.lock` keeps a second run off the cache while one is running.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from mpliver._version import __version__
from mpliver.data.config import PreprocessConfig
from mpliver.data.liver_mask import mask_source_from_config
from mpliver.data.prepare import prepare_case
from mpliver.data.slices import SliceMapping
from mpliver.data.workers import end_with_parent
from mpliver.errors import InputError
from mpliver.io.atomic import staged_folder, write_json_atomic
from mpliver.io.geometry import Geometry
from mpliver.io.layout import Dataset
from mpliver.io.lock import FolderLock

CACHE_FORMAT = 2  # 2: lesions.npy and the per-lesion contrast
_HASH_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def case_source_files(dataset: Dataset, case: str, config: PreprocessConfig) -> dict[str, Path]:
    """Every file a cached case is built from, by role ('PV', 'ART', 'label', 'label:ART', 'liver_mask')."""
    files = {name: dataset.image_path(case, i) for i, name in enumerate(dataset.phases)}
    if dataset.label_path(case).exists() or config.liver_mask_source == "label":
        files["label"] = dataset.label_path(case)
    if config.registration == "tumor-center":
        for i, name in enumerate(dataset.phases[1:], start=1):
            files[f"label:{name}"] = dataset.phase_label_path(case, i)
    if config.liver_mask_source == "file":
        files["liver_mask"] = mask_source_from_config(config).path(case)
    return files


def case_key(config: PreprocessConfig, phases: list[str], hashes: dict[str, str]) -> str:
    """The identity of a cached case: format, mpliver version, config, phases and source hashes."""
    blob = json.dumps({"format": CACHE_FORMAT, "mpliver": __version__, "config": config.to_dict(),
                       "phases": phases, "sources": dict(sorted(hashes.items()))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CachedCase:
    """A cached case opened read-only with memory-mapped arrays."""

    root: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> CachedCase:
        root = Path(root)
        return cls(root, json.loads((root / "meta.json").read_text()))

    def _load(self, name: str) -> np.ndarray:
        return np.load(self.root / f"{name}.npy", mmap_mode="r")

    @property
    def images(self) -> np.ndarray:
        return self._load("images")

    @property
    def mask(self) -> np.ndarray:
        return self._load("mask")

    @property
    def label(self) -> np.ndarray | None:
        return self._load("label") if (self.root / "label.npy").exists() else None

    @property
    def lesions(self) -> np.ndarray | None:
        """(T, n, n) numbered lesions, None for a case without tumour."""
        return self._load("lesions") if (self.root / "lesions.npy").exists() else None

    @property
    def lesion_table(self) -> list[dict[str, Any]]:
        """Per lesion: index, voxels, cnr {phase: value or None}, slices (centre slices it shows in)."""
        return list(self.meta.get("lesions", []))

    @property
    def halo(self) -> int:
        return int(self.meta["halo"])

    @property
    def num_slices(self) -> int:
        return len(self.meta["mapping"]["centre_slices"])

    @property
    def tumor_slices(self) -> list[int]:
        return list(self.meta["tumor_slices"])

    @property
    def mapping(self) -> SliceMapping:
        return SliceMapping.from_dict(self.meta["mapping"])

    @property
    def pv_geometry(self) -> Geometry:
        return Geometry.from_dict(self.meta["pv_geometry"])


def _write_case(out: Path, prepared, key: str, sources: dict[str, Any], pv_geometry: Geometry,
                dtype: str) -> dict[str, Any]:
    """Write one case atomically: into a staging folder, then rename it into place."""
    final = out / "cases" / prepared.case_id
    with staged_folder(final) as tmp:
        np.save(tmp / "images.npy", prepared.images.astype(dtype))
        np.save(tmp / "mask.npy", prepared.mask.astype(np.uint8))
        if prepared.label is not None:
            np.save(tmp / "label.npy", prepared.label.astype(np.uint8))
        if prepared.lesions is not None:
            count = int(prepared.lesions.max(initial=0))  # the smallest type that holds every index
            np.save(tmp / "lesions.npy", prepared.lesions.astype(np.min_scalar_type(count)))
        where = prepared.lesion_slices()
        meta = {
            "case": prepared.case_id, "key": key, "phases": prepared.phases, "halo": prepared.halo,
            "stored_slices": prepared.stored_slices.tolist(),
            "tumor_slices": prepared.tumor_slices().tolist(),
            "mapping": prepared.mapping.to_dict(), "pv_geometry": pv_geometry.to_dict(),
            "transforms": {k: t.to_dict() for k, t in prepared.transforms.items()},
            "lesions": [{**c.to_dict(), "slices": where.get(c.index, [])} for c in prepared.lesion_contrast],
            "sources": sources,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return manifest_entry(meta)


def manifest_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """A case's manifest entry, from its meta.json."""
    return {"key": meta["key"], "num_slices": len(meta["mapping"]["centre_slices"]),
            "tumor_slices": meta["tumor_slices"], "sources": meta["sources"]}


def _process_case(root: str, case: str, config_dict: dict, out: str, key: str, sources: dict,
                  single_thread: bool) -> tuple[str, dict]:
    """Worker: read, prepare and write one case."""
    if single_thread:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        torch.set_num_threads(1)
    config = PreprocessConfig.from_dict(config_dict)
    dataset = Dataset(root)
    volumes = dataset.load_case(case, with_phase_labels=config.registration == "tumor-center")
    paths = {role: Path(s["path"]) for role, s in sources.items()}
    source = mask_source_from_config(config, dataset)
    prepared = prepare_case(volumes, config, source, paths)
    return case, _write_case(Path(out), prepared, key, sources, volumes.pv_geometry, config.cache_dtype)


@dataclass
class PreprocessSummary:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    manifest: Path | None = None


def _fingerprints(files: dict[str, Path], previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """sha256 per file; the previous run's hash is reused where path, size and mtime are unchanged."""
    out = {}
    for role, path in files.items():
        if not path.exists():
            raise InputError(f"missing input file ({role})", path)
        st = path.stat()
        prev = previous.get(role) or {}
        stamp = (str(path), st.st_size, st.st_mtime_ns)
        if (prev.get("path"), prev.get("size"), prev.get("mtime_ns")) == stamp:
            digest = prev["sha256"]
        else:
            digest = file_sha256(path)
        out[role] = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return out


def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / "manifest.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def preprocess_dataset(root: str | Path, out: str | Path, config: PreprocessConfig | None = None,
                       workers: int = 2, cases: Iterable[str] | None = None,
                       on_case: Callable[[str, str], None] | None = None,
                       wait_for_lock: float | None = 0.0) -> PreprocessSummary:
    """Pre-process every training case of the dataset at `root` into the cache `out`, reusing valid cases.

    `on_case(case, status)` is called with status 'reused' or 'built' (for a progress bar). A cache that
    another live run holds is refused (`FolderBusyError`) or, with `wait_for_lock` seconds (None: no limit),
    waited for.
    """
    config = config or PreprocessConfig()
    if config.liver_mask_source == "model":
        raise InputError("the cache builds liver masks from labels or files; liver_mask_source 'model' "
                         "runs at inference (mpliver.data.liver_mask.FromModel)")
    dataset = Dataset(root)
    out = Path(out)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    with FolderLock(out, "preprocess run", timeout=wait_for_lock):
        return _preprocess_locked(root, dataset, out, config, workers, cases, on_case)


def _preprocess_locked(root: str | Path, dataset: Dataset, out: Path, config: PreprocessConfig, workers: int,
                       cases: Iterable[str] | None, on_case: Callable[[str, str], None] | None
                       ) -> PreprocessSummary:
    for pattern in (".tmp-*", ".old-*"):  # the unnamed temporary folders of earlier versions
        for stale in (out / "cases").glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    manifest = read_manifest(out)
    # a changed global parameter invalidates every case, also those this run does not rebuild
    same_config = manifest.get("config") == config.to_dict() and manifest.get("phases") == dataset.phases
    entries: dict[str, Any] = dict(manifest.get("cases") or {}) if same_config else {}
    case_list = list(cases) if cases is not None else dataset.validate("Tr")
    todo, summary = [], PreprocessSummary()
    for case in case_list:
        prev = entries.get(case, {})
        sources = _fingerprints(case_source_files(dataset, case, config), prev.get("sources", {}))
        key = case_key(config, dataset.phases, {r: s["sha256"] for r, s in sources.items()})
        meta = _read_meta(out / "cases" / case / "meta.json")
        if meta.get("key") == key:  # complete and valid; a kill may have come before the manifest update
            entries[case] = {**manifest_entry(meta), "sources": sources}  # today's stamps, the same hashes
            summary.reused.append(case)
            if on_case:
                on_case(case, "reused")
        else:
            entries.pop(case, None)
            todo.append((case, key, sources))

    def save_manifest() -> None:
        write_json_atomic(out / "manifest.json", {
            "format": CACHE_FORMAT, "mpliver": __version__, "dataset": str(Path(root).absolute()),
            "phases": dataset.phases, "config": config.to_dict(),
            "cases": {c: entries[c] for c in sorted(entries)}})

    def finished(case: str, entry: dict[str, Any]) -> None:
        entries[case] = entry
        save_manifest()  # at once: a rerun after a kill redoes only the cases not recorded here
        summary.built.append(case)
        if on_case:
            on_case(case, "built")

    save_manifest()
    args = [(str(root), c, config.to_dict(), str(out), k, s, workers > 1) for c, k, s in todo]
    if workers <= 1 or len(args) <= 1:
        for a in args:
            finished(*_process_case(*a[:-1], single_thread=False))
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=end_with_parent,
                                   initargs=(os.getpid(),))
        try:
            pending = {pool.submit(_process_case, *a) for a in args}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in done if f.exception() is not None]
                for fut in done:
                    if fut.exception() is None:
                        finished(*fut.result())
                if failed:
                    raise failed[0].exception()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.manifest = out / "manifest.json"
    return summary


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def open_cache(out: str | Path) -> dict[str, CachedCase]:
    """Every valid case listed in the manifest of cache `out`, opened read-only."""
    manifest = read_manifest(out)
    if not manifest:
        raise InputError("no manifest.json: not a pre-processed cache (run `mpliver preprocess`)", out)
    return {c: CachedCase.open(Path(out) / "cases" / c) for c in manifest.get("cases", {})}
