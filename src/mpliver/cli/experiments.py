"""`mpliver experiments SET DATASET --out EXP [--preset cpu-small] [--folds K] [--only a,b] [--seeds K]
[key=value ...]`: run a named set of configurations (comparison, fusion, ablation, backbones) and tabulate
them side by side; with --seeds, once per training seed (EXP/SET/seed_S/ROW) with the tables over seeds.
SET `nnunet` runs nnU-Net v2 instead (cli/nnunet_experiment.py; overrides nnunet.epochs=N and the like)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mpliver.errors import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("experiments")
    def experiments(
        set_name: str = typer.Argument(..., metavar="SET", help="comparison, fusion, ablation, backbones or "
                                       "nnunet (nnU-Net v2, needs mpliver[nnunet])."),
        dataset: Path = typer.Argument(..., help="Dataset folder with folds in dataset.json."),
        overrides: list[str] = typer.Argument(None, help="Overrides for every row, e.g. optim.epochs=4."),
        out: Path = typer.Option(..., "--out", "-o", help="Experiments folder (rows in OUT/SET/ROW)."),
        preset: str = typer.Option("cpu-small", "--preset", "-p", help="Config preset name or YAML file."),
        folds: int = typer.Option(None, "--folds", help="Run only the first K folds (a quick run)."),
        only: str = typer.Option(None, "--only", help="Comma-separated rows to run (default: all)."),
        seeds: int = typer.Option(None, "--seeds", help="Repeat every row with K training seeds "
                                  "(train.seed, +1, ...) on the same folds; tables over seeds in OUT/SET."),
        peers: list[Path] = typer.Option(None, "--peers", help="nnunet: another folder to search for the "
                                         "finished paper and single_phase rows (repeatable)."),
    ) -> None:
        """Reproduce one of the paper's tables: every row a cross-validation, finished rows skipped."""
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console

        if set_name == "nnunet":
            # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
            from mpliver.cli.nnunet_experiment import run

            if only or seeds is not None:
                raise ConfigError("--only and --seeds apply to the other sets; nnunet has one row and "
                                  "uses nnU-Net's own seeding")

            return run(dataset, out, folds, overrides or [], peers or [])
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from mpliver.cli._train_progress import TrainProgress
        from mpliver.experiments.sets import get_set, run_experiments
        from mpliver.training.callbacks import use_callbacks

        console = Console(stderr=True)

        def say(msg: str) -> None:
            console.print(msg, markup=False, highlight=False)

        exp = get_set(set_name)
        rows = [r.strip() for r in only.split(",") if r.strip()] if only else None
        console.print(f"[bold]mpliver experiments[/bold] {exp.name}: rows "
                      f"{', '.join(rows or [r.name for r in exp.rows])}; preset {preset} -> {out / exp.name}")
        started = time.time()
        if seeds is not None:
            # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
            from mpliver.experiments.seeds import run_seeded_experiments

            with TrainProgress() as bar, use_callbacks(bar):
                seeded = run_seeded_experiments(exp.name, dataset, out, seeds, preset=preset,
                                                overrides=overrides or [], folds=folds, only=rows,
                                                on_event=say)
            typer.echo((seeded.out_dir / "seed_table1.md").read_text())
            typer.echo((seeded.out_dir / "claims.md").read_text())
            console.print(f"seeds {seeded.seeds}: ran {len(seeded.ran)} (row, seed) runs, skipped "
                          f"{len(seeded.skipped)} finished earlier; {time.time() - started:.0f} s; "
                          f"all tables: {seeded.out_dir / 'seed_tables.md'}")
            return
        with TrainProgress() as bar, use_callbacks(bar):
            result = run_experiments(exp.name, dataset, out, preset=preset, overrides=overrides or [],
                                     folds=folds, only=rows, on_event=say)
        typer.echo((result.out_dir / "table1.md").read_text())
        typer.echo((result.out_dir / "comparison.md").read_text())
        console.print(f"ran {result.ran or 'nothing'}, "
                      f"skipped (finished earlier) {result.skipped or 'none'}; "
                      f"{time.time() - started:.0f} s; all tables: {result.out_dir / 'tables.md'}")
