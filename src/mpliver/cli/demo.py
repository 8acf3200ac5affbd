"""`mpliver demo`: the newcomer's one command, end to end on the built-in synthetic cohort."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer

from mpliver.errors import RESEARCH_NOTICE


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
        quick: bool = typer.Option(False, "--quick", help="A sub-3-minute smoke version."),
        cases: int = typer.Option(None, "--cases", help="Number of synthetic cases (default 48; quick 8)."),
        folds: int = typer.Option(None, "--folds", help="Folds, all run (default 2; quick 2)."),
        seed: int = typer.Option(0, "--seed", help="Cohort and training seed."),
        phases: str = typer.Option("PV,ART", "--phases", help="The protocol, primary first (e.g. EQP,ART)."),
        randomize: bool = typer.Option(
            False, "--randomize", help="The sim-to-real recipe: a domain-randomised cohort and intensity "
            "augmentation, for a bundle meant to meet real CT (docs/phantom.md)."),
    ) -> None:
        """Synthetic cohort -> pre-processing -> liver model -> cross-validation of the full two-phase model
        and the single-phase model -> tables -> report -> bundle -> prediction of a held-out case.

        Sized for 2 CPU cores (--quick: a shorter smoke run); uses the GPU when there is one.
        """

        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console
        from rich.markdown import Markdown

        from mpliver.apps.demo import DemoSettings, run_demo
        from mpliver.cli._display import count_bar
        from mpliver.cli._train_progress import TrainProgress
        from mpliver.training.callbacks import use_callbacks

        console = Console()
        settings = DemoSettings.quick() if quick else DemoSettings()
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from mpliver.data.phantom.kinetics import parse_phases

        changes = {k: v for k, v in (("cases", cases), ("folds", folds), ("seed", seed)) if v is not None}
        changes["phases"] = parse_phases(phases)
        changes["randomize"] = randomize
        settings = dataclasses.replace(settings, **changes)
        console.rule("[bold]mpliver demo[/bold]" + (" (quick)" if quick else ""))
        console.print(
            f"{settings.cases} synthetic cases, {settings.folds}-fold cross-validation "
            f"(reduced from the paper's 5 so that every case is tested within the time budget), "
            f"preset {settings.preset}; synthetic data. {RESEARCH_NOTICE}."
        )
        started = time.perf_counter()
        with count_bar("phantom") as progress, TrainProgress() as bar, use_callbacks(bar):
            result = run_demo(out, settings, say=console.print, progress=progress)
        if result.tables_md is not None and result.tables_md.exists():
            console.rule("Results (test folds pooled, inside the reference liver mask)")
            console.print(Markdown(result.tables_md.read_text()))
        fnh = result.fnh_dpc
        if fnh:
            parts = ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} n/a" for k, v in fnh.items())
            console.print(f"FNH (nearly invisible in PV, clear in ART) DPC %: {parts}")
        if result.predicted_case:
            console.print(f"predicted held-out case {result.predicted_case}: tumour Dice "
                          f"{result.predicted_dice:.1f} % -> {Path(out) / 'predict'}")
        console.print(f"report: {result.report}")
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        console.print(f"wall time {time.perf_counter() - started:.0f} s ({stages})")
