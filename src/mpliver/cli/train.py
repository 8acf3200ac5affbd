"""`mpliver train DATASET_OR_CACHE --preset cpu-small --fold 0 --out RUNS/NAME [--resume] [key=value ...]`.

The same command runs under `torchrun --nproc_per_node N -m mpliver.cli train ...` for DDP.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mpliver.errors import ConfigError


def parse_fold(text: str) -> int | None:
    """`--fold`: a fold number, or `none` to train on every case."""
    if text.strip().lower() in ("none", "all-cases"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--fold must be a fold number or 'none', got '{text}'") from None


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(
            ..., help="Dataset folder (pre-processed first) or a cache from `preprocess`."
        ),
        overrides: list[str] = typer.Argument(
            None, help="Config overrides such as optim.lr=1e-3 model.width=0.5."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (config, log, checkpoints)."),
        preset: str = typer.Option("cpu-small", "--preset", "-p", help="Config preset name or YAML file."),
        fold: str = typer.Option("0", "--fold", help="Held-out test fold, or 'none' to train on every case."),
        resume: bool = typer.Option(
            False, "--resume", help="Continue the run in --out from its last checkpoint. The config must be "
            "the run's (refused otherwise, naming the keys); only optim.epochs and how it runs (device, "
            "workers, progress) may change."
        ),
        task: str = typer.Option(
            None, "--task", help="tumor (default) or liver (the stage-1 liver_resunet)."
        ),
    ) -> None:
        """Train one model on one fold: SGD + step schedule, validation each epoch, best/last checkpoints."""
        # lazy: start-up time (torch); every command module is imported to build the app
        from mpliver.cli._train_progress import TrainProgress
        from mpliver.runtime import env_dist_info
        from mpliver.training.config import load_task_config
        from mpliver.training.trainer import train as run_training

        config = load_task_config(preset, task, overrides or [])
        fold_number = parse_fold(fold)
        main = env_dist_info().is_main
        console = Console(stderr=True, quiet=not main)
        console.print(
            f"[bold]mpliver train[/bold]: model {config.model.name} {config.model.overrides or ''}, "
            f"task {config.train.task}, fold {fold_number}, preset {preset} -> {out}"
        )

        def on_epoch(row: dict) -> None:
            console.print(
                f"epoch {row['epoch']:>3}/{config.optim.epochs}  train_loss {row['train_loss']:.4f}  "
                f"val_loss {row['val_loss']:.4f}  val_dice {row['val_dice']:.4f}  lr {row['lr']:.2e}  "
                f"{row['slices_per_s']:.1f} slices/s"
            )

        with TrainProgress() as bar:
            run_dir = run_training(config, data, fold_number, out, resume=resume, on_epoch=on_epoch,
                                   callbacks=[bar])
        console.print(f"run folder: {run_dir} (checkpoints/best.pt, checkpoints/last.pt, log.csv)")
