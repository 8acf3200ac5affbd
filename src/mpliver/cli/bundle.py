"""`mpliver bundle RUN_DIR --out model.mpliver [--liver-run LIVER_RUN]`: pack trained runs for `predict`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("bundle")
    def bundle(
        run_dir: Path = typer.Argument(..., help="Tumour training run folder (config.yaml, checkpoints/)."),
        out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write, e.g. model.mpliver."),
        liver_run: Path | None = typer.Option(
            None, "--liver-run", help="Liver training run (--task liver) to include as the liver stage."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
        registration: str = typer.Option(
            "liver", "--registration", help="Registration at inference: liver (label-free) or none."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle file."),
    ) -> None:
        """Pack a trained model (and its liver model) with its pre-processing into one file."""
        # lazy: start-up time (every command module is imported for --help; torch with the bundle)
        from rich.console import Console

        from mpliver.experiments.packaging import bundle_from_runs
        from mpliver.inference.bundle import load_bundle

        path = bundle_from_runs(run_dir, out, liver_run=liver_run, checkpoint=checkpoint,
                                registration=registration, overwrite=overwrite)
        Console(stderr=True).print(f"bundle written: {path}: {load_bundle(path).describe()}")
