"""`mpliver bench --peer nnunet`: `mpliver predict` and nnU-Net v2's own predictor on the same 512x512x100
study, in one run, on the same device and thread count.

The study is benchmarks/predict_time.py's: a synthetic HCC case at the paper's grid (512x512 at 0.7 mm, 100
slices of 2.5 mm). mpliver runs an untrained bundle of `preset` with the reference liver mask given (no liver
model), as predict_time.py's default; its time is read -> register -> prepare -> network -> write. nnU-Net
gets PV and ART (resampled onto the PV grid through the headers, as `convert --to nnunet` exports them) and
runs in a child process (nnunet_peer.py): its planner's 2d plan for the study, random weights, its predictor
from files to files, with mirroring TTA (its default) and without. Ratios > 1: nnU-Net takes longer.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpliver.data.config import PreprocessConfig
from mpliver.data.phantom import PhantomConfig, generate_case
from mpliver.errors import InputError
from mpliver.experiments.nnunet import nnunet_env, run_step
from mpliver.extras import require_nnunet
from mpliver.inference.bundle import save_bundle
from mpliver.inference.predict import predict, write_outputs
from mpliver.io.labels import DEFAULT_PHASES
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import write_nifti
from mpliver.io.nnunet import export_nnunet
from mpliver.models import create_model
from mpliver.training.config import load_config

STUDY_SHAPE = (512, 512, 100)
STUDY_SPACING = (0.7, 0.7, 2.5)
DATASET_ID = 990


def bench_study(work: Path, shape: tuple[int, int, int] = STUDY_SHAPE,
                spacing: tuple[float, float, float] = STUDY_SPACING) -> dict[str, Path]:
    """Write (once) the PV, ART and label NIfTI files of the HCC phantom study (512x512x100 by default)."""
    tag = "" if (tuple(shape), tuple(spacing)) == (STUDY_SHAPE, STUDY_SPACING) else "x".join(map(str, shape))
    paths = {k: work / f"STUDY{tag}_{k}.nii.gz" for k in ("PV", "ART", "label")}
    if all(p.exists() for p in paths.values()):
        return paths
    work.mkdir(parents=True, exist_ok=True)
    case = generate_case(0, 7, "HCC", PhantomConfig(shape=tuple(shape), spacing=tuple(spacing)))
    write_nifti(paths["PV"], case.phases["PV"].astype(np.int16), case.geometries["PV"])
    write_nifti(paths["ART"], case.phases["ART"].astype(np.int16), case.geometries["ART"])
    write_nifti(paths["label"], case.label, case.geometries["PV"])
    return paths


def untrained_bundle(path: Path, preset: str) -> Path:
    """A bundle of `preset`'s tumour model with random weights (it costs what a trained one costs) whose
    liver mask comes from a file given to predict."""
    cfg = load_config(preset)
    torch.manual_seed(0)
    model = create_model(cfg.model.name, **cfg.model.overrides).eval()
    pre = PreprocessConfig(input_size=cfg.data.preprocess.input_size, crop=cfg.data.preprocess.crop,
                           registration="liver",
                           liver_mask_source="file", liver_mask_pattern="(given to predict)")
    return save_bundle(path, model, list(DEFAULT_PHASES), pre, {"synthetic": True}, None)


def run_peer_bench(work: str | Path, preset: str = "default", threads: int = 2,
                   on_event: Callable[[str], None] | None = None,
                   shape: tuple[int, int, int] = STUDY_SHAPE,
                   spacing: tuple[float, float, float] = STUDY_SPACING) -> dict[str, Any]:
    """Time `mpliver predict` and nnU-Net's predictor (TTA on and off) on the study; the ratios to mpliver.
    `shape` and `spacing` change the study (tests use a small one)."""
    require_nnunet("mpliver bench --peer nnunet")
    say = on_event or (lambda _msg: None)
    work = Path(work)
    torch.set_num_threads(threads)
    files = bench_study(work, shape, spacing)
    say(f"mpliver predict ({preset}, untrained weights, liver mask given) on {files['PV'].name}")
    bundle = untrained_bundle(work / f"{preset}_untrained.mpliver", preset)
    start = time.perf_counter()
    result = predict(bundle, {"PV": files["PV"], "ART": files["ART"]}, case_id="STUDY", device="cpu",
                     liver_mask=files["label"])
    write_outputs(result, work / "mpliver_out")
    mpliver_s = round(time.perf_counter() - start, 2)  # the ratios use the seconds as reported
    say(f"mpliver predict: {mpliver_s:.1f} s")

    exp = work / "nnunet"
    shutil.rmtree(exp, ignore_errors=True)  # nnU-Net re-plans each run: the same work every time
    layout = exp / "layout"
    for i, phase in enumerate(("PV", "ART")):
        (layout / "imagesTr").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[phase], layout / "imagesTr" / f"STUDY_{i:04d}.nii.gz")
    (layout / "labelsTr").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files["label"], layout / "labelsTr" / "STUDY.nii.gz")
    write_dataset_json(layout, list(DEFAULT_PHASES), 1)
    export_nnunet(layout, exp / "nnUNet_raw", dataset_id=DATASET_ID, name="Bench")
    env = {**nnunet_env(exp, threads), "nnUNet_n_proc_DA": str(threads)}
    out_json = exp / "out" / "nnunet_times.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    say("nnU-Net v2: planning the study, then its predictor without and with mirroring TTA")
    log = exp / "nnunet_peer.log"
    log.unlink(missing_ok=True)
    run_step([str(DATASET_ID), str(out_json)], env, log, module="mpliver.apps.nnunet_peer")
    if not out_json.is_file():
        raise InputError("nnU-Net's predictor wrote no timings", log)
    peer = json.loads(out_json.read_text())
    secs = peer["seconds"]
    return {
        "study": {"shape": list(shape), "spacing_mm": list(spacing)},
        "threads": threads,
        "device": "cpu",
        "mpliver": {"preset": preset, "total_s": mpliver_s,
                    "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
                    "network_slices": int(np.count_nonzero(result.liver.any(axis=(0, 1))))},
        "nnunet": peer,
        "ratio_nnunet_tta_to_mpliver": round(secs["tta"] / mpliver_s, 2),
        "ratio_nnunet_no_tta_to_mpliver": round(secs["no_tta"] / mpliver_s, 2),
    }
