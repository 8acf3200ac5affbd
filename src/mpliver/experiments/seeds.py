"""Seed repeats of an experiment set: every row trained with K training seeds on the same folds.

Why: a from-scratch run on the synthetic cohort moves by several DPC points with the training seed (and with
the CPU's float summation order), as much as some effects the paper reports; a difference counts only if it
survives that spread.

Layout: OUT/SET/seed_S/ROW is the cross-validation of ROW with `train.seed=S` (OUT/SET/seed_S holds that
seed's own tables, as a single-seed set run would); OUT/SET holds the tables over seeds
(`experiments.seed_tables`).
The seeds are base, base + 1, ..., base + K − 1, where base is the configured `train.seed`. The folds, the
cohort and the evaluation are the same for every seed; the seed sets the weight initialisation, the
validation share, the slice sampling and the augmentation. Seeds run one after the other (every row of the
first seed first), so an interrupted run leaves complete tables for the seeds that finished, and a rerun
skips every finished (row, seed) run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpliver.errors import ConfigError
from mpliver.experiments.seed_tables import write_seed_tables
from mpliver.experiments.sets import ExperimentResult, ExperimentSet, get_set, run_experiments
from mpliver.io.lock import FolderLock
from mpliver.training.config import load_config

SEEDS_JSON = "seeds.json"


def seed_dir_name(seed: int) -> str:
    return f"seed_{seed}"


@dataclass
class SeededResult:
    """One `ExperimentResult` per seed (in seed order) and where the tables over seeds were written."""

    out_dir: Path
    set: ExperimentSet
    seeds: list[int]
    by_seed: dict[int, ExperimentResult] = field(default_factory=dict)
    command: dict[str, Any] = field(default_factory=dict)  # dataset, preset, overrides, folds, rows

    @property
    def ran(self) -> list[tuple[str, int]]:
        return [(row, s) for s, r in self.by_seed.items() for row in r.ran]

    @property
    def skipped(self) -> list[tuple[str, int]]:
        return [(row, s) for s, r in self.by_seed.items() for row in r.skipped]


def seed_values(base: int, count: int) -> list[int]:
    """The training seeds of a K-seed run: base, base + 1, ..., base + K − 1."""
    if count < 1:
        raise ConfigError(f"--seeds must be at least 1, got {count}")
    return [int(base) + i for i in range(count)]


def run_seeded_experiments(
    set_name: str,
    dataset_dir: str | Path,
    out_dir: str | Path,
    seeds: int,
    preset: str | Path | None = "cpu-small",
    overrides: Sequence[str] = (),
    folds: int | Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    train_fn: Callable[..., Path] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> SeededResult:
    """Run the set once per training seed into OUT/SET/seed_S, then write the tables over seeds to OUT/SET."""
    exp = get_set(set_name)
    for item in overrides:  # the seed is what this command varies; a fixed one would repeat a single run
        if item.split("=", 1)[0].strip() == "train.seed":
            raise ConfigError("--seeds sets train.seed for each repeat; leave train.seed out of the "
                              "overrides")
    base = load_config(preset, list(overrides)).train.seed
    say = on_event or (lambda _msg: None)
    set_dir = Path(out_dir) / exp.name
    result = SeededResult(out_dir=set_dir, set=exp, seeds=seed_values(base, seeds), command={
        "dataset": str(Path(dataset_dir).resolve()), "preset": str(preset), "overrides": list(overrides),
        "folds": folds if folds is None or isinstance(folds, int) else list(folds),
        "only": None if only is None else list(only)})
    with FolderLock(set_dir, "seeded experiments run of this set"):  # each seed_S folder is locked too
        for seed in result.seeds:
            result.by_seed[seed] = run_experiments(
                exp.name,
                dataset_dir,
                out_dir,
                preset=preset,
                overrides=list(overrides) + [f"train.seed={seed}"],
                folds=folds,
                only=only,
                train_fn=train_fn,
                on_event=lambda msg, s=seed: say(f"seed {s}: {msg}"),
                set_dir=set_dir / seed_dir_name(seed),
            )
        write_seed_tables(result)
    return result
