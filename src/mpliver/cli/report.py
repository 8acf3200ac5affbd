"""`mpliver report RUN_DIR [--case CASE ...]`: figures (overlays, confidence maps, training curves, per-type
DPC bars) and an index page, for a crossval run or an experiment set folder."""

from __future__ import annotations

from pathlib import Path

import typer

from mpliver.errors import RESEARCH_NOTICE


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="A crossval run folder or an experiment set folder."),
        case: list[str] = typer.Option(None, "--case", help="Case to draw (repeatable)."),
        num_cases: int = typer.Option(3, "--num-cases", help="Cases to choose without --case."),
    ) -> None:
        """Write RUN_DIR/report/*.png and RUN_DIR/report/index.md linking them with the tables."""
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console

        from mpliver.experiments.report import write_report

        index = write_report(run_dir, cases=case or None, num_cases=num_cases)
        figures = sorted(p.name for p in index.parent.glob("*.png"))
        Console(stderr=True).print(f"report: {index} ({len(figures)} figures; "
                                   f"{RESEARCH_NOTICE})")
