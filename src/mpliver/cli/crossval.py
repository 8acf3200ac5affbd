"""`mpliver crossval DATASET --preset cpu-small --out RUN [--folds K] [key=value ...]`: train and evaluate the
folds of one configuration, then write Tables 1 and 2 for the pooled test folds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mpliver.errors import RESEARCH_NOTICE


def register(app: typer.Typer) -> None:
    @app.command("crossval")
    def crossval(
        dataset: Path = typer.Argument(..., help="Dataset folder with folds in dataset.json."),
        overrides: list[str] = typer.Argument(None, help="Overrides, e.g. optim.epochs=4 model.width=0.5."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (folds, predictions, tables)."),
        preset: str = typer.Option("cpu-small", "--preset", "-p", help="Config preset name or YAML file."),
        folds: int = typer.Option(None, "--folds", help="Run only the first K folds (a quick run)."),
        name: str = typer.Option(None, "--name", help="Method name in the tables (default: the model name)."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="Predict with: best or last."),
    ) -> None:
        """Cross-validate one configuration: train each fold, predict its test cases, evaluate them pooled."""
        # lazy: start-up time (torch); every command module is imported to build the app
        from mpliver.cli._train_progress import TrainProgress
        from mpliver.experiments.crossval import crossval as run_crossval
        from mpliver.training.callbacks import use_callbacks
        from mpliver.training.config import load_config

        console = Console(stderr=True)

        def say(msg: str) -> None:
            console.print(msg, markup=False, highlight=False)

        config = load_config(preset, overrides or [])
        which = "all folds" if folds is None else f"first {folds} fold(s)"
        console.print(f"[bold]mpliver crossval[/bold]: model {config.model.name} "
                      f"{config.model.overrides or ''}, preset {preset}, {which} -> {out}")
        def on_epoch(row: dict) -> None:
            say(f"  epoch {row['epoch']:>3}/{config.optim.epochs}  train_loss {row['train_loss']:.4f}  "
                f"val_dice {row['val_dice']:.4f}  {row['slices_per_s']:.1f} slices/s")

        with TrainProgress() as bar, use_callbacks(bar):  # the bar of every fold's training
            result = run_crossval(config, dataset, out, folds=folds, name=name, checkpoint=checkpoint,
                                  on_event=say, on_epoch=on_epoch)
        typer.echo((out / "table1.md").read_text())
        typer.echo((out / "table2.md").read_text())
        console.print(f"trained folds {result.trained}, skipped (finished earlier) {result.skipped}; "
                      f"tables: {out / 'table1.md'}, {out / 'table2.md'} "
                      f"({RESEARCH_NOTICE})")
