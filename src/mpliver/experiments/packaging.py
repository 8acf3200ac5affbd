"""Packaging training runs into a bundle: `mpliver bundle RUN_DIR --out model.mpliver [--liver-run LIVER]`.

This reads training run folders (config, checkpoint, run_info), so it sits above training and inference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from mpliver.data.config import INFERENCE_REGISTRATIONS
from mpliver.errors import ConfigError, InputError
from mpliver.inference.bundle import BundleError, LiverStage, save_bundle
from mpliver.io.atomic import check_writable
from mpliver.io.labels import DEFAULT_PHASES, PRIMARY_PHASE
from mpliver.io.layout import Dataset
from mpliver.models import ModelConfig, build_model, create_model
from mpliver.training.checkpoint import load_checkpoint
from mpliver.training.config import config_from_dict
from mpliver.training.run_info import read_run_info


def _run_model(run_dir: Path, checkpoint: str, task: str) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model with the checkpoint's weights, training Config, run_info) of a training run folder."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise InputError("not a training run folder (no config.yaml)", run_dir)
    config = config_from_dict(yaml.safe_load(config_path.read_text()) or {}, source=str(config_path))
    if config.train.task != task:
        raise ConfigError(f"expected a {task} run, got train.task={config.train.task!r}", run_dir)
    ckpt_path = run_dir / config.train.checkpoint_dir / f"{checkpoint}.pt"
    state = load_checkpoint(ckpt_path)
    if isinstance(state.get("model_config"), dict):  # the architecture as trained (newer checkpoints)
        model = build_model(ModelConfig.from_dict(state["model_config"]))
    else:  # older checkpoints: the run's config.yaml plus today's registry defaults
        model = create_model(config.model.name, **config.model.overrides)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise BundleError(f"checkpoint does not fit the run's model ({str(exc).splitlines()[0]}); a run "
                          "saved before a registry default changed (liver_resunet's width was 0.5 before "
                          "2026-11-28) needs that option in its config.yaml, e.g. model: {width: 0.5}",
                          ckpt_path) from None
    info = read_run_info(run_dir)
    info["_epoch"] = int(state.get("epoch", 0))
    return model.eval(), config, info


def _training_summary(run_dir: Path, info: dict[str, Any],
                      checkpoint: str) -> tuple[dict[str, Any], list[str]]:
    fold = info.get("fold_info") or {}
    dataset_dir = Path(fold.get("dataset", "")) if fold.get("dataset") else None
    phases, synthetic, generator = None, False, None
    if dataset_dir is not None and (dataset_dir / "dataset.json").is_file():
        ds = Dataset(dataset_dir)
        phases = ds.phases
        block = ds.meta.get("synthetic")
        synthetic = block is not None
        generator = block.get("generator") if isinstance(block, dict) else None
    cases = len(fold.get("train_cases", [])) + len(fold.get("val_cases", []))
    summary = {"synthetic": synthetic, "num_cases": cases, "dataset": str(dataset_dir or ""),
               "generator": generator, "fold": fold.get("fold"), "run": str(run_dir.resolve()),
               "checkpoint": checkpoint, "epoch": info.get("_epoch")}
    return summary, phases or []


def bundle_from_runs(run_dir: str | Path, out: str | Path, liver_run: str | Path | None = None,
                     checkpoint: str = "best", registration: str = "liver",
                     synthetic: bool | None = None, overwrite: bool = False) -> Path:
    """Build a bundle from a tumour training run (and optionally a liver run) and write it to `out`.

    The tumour run's input size and crop become the inference pre-processing; `registration` is the
    label-free method used on new studies ('tumor-center' needs labels and cannot run there). `synthetic`
    overrides what the run's dataset.json says. An existing `out` is refused unless `overwrite`.
    """
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    if registration not in INFERENCE_REGISTRATIONS:
        raise ConfigError(f"inference registration must be 'liver' or 'none', got {registration!r}")
    check_writable(out, "file", overwrite=overwrite)
    run_dir = Path(run_dir)
    model, config, info = _run_model(run_dir, checkpoint, "tumor")
    training, phases = _training_summary(run_dir, info, checkpoint)
    training["train_registration"] = config.data.preprocess.registration
    if synthetic is not None:
        training["synthetic"] = bool(synthetic)
    cfg = model.config
    single = cfg.input_phases == 1
    n = 1 if single else cfg.num_phases
    if len(phases) < n:
        phases = list(DEFAULT_PHASES) + [f"PHASE{i}" for i in range(2, n)] if n > 1 else [PRIMARY_PHASE]
    phases = phases[:n]
    liver = None
    if liver_run is not None:
        liver_model, liver_config, _ = _run_model(Path(liver_run), checkpoint, "liver")
        liver = LiverStage(liver_model, liver_config.data.preprocess.input_size)
        training["liver_run"] = str(Path(liver_run).resolve())
    # the run's own pre-processing (window, size, crop, margin, context), with what inference must change:
    # a label-free registration and the liver mask from the liver model or a file instead of the label
    preprocess = dataclasses.replace(
        config.data.preprocess, registration=registration, keep_slices="liver", liver_mask_values=None,
        liver_mask_source="model" if liver is not None else "file",
        liver_mask_pattern=None if liver is not None else "(given to predict)")
    return save_bundle(out, model, phases, preprocess, training, liver)
