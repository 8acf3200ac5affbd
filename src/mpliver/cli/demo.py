"""`mpliver demo`: the newcomer's one command. For now it writes and previews the built-in synthetic cohort;
the end-to-end pipeline (pre-process, train, cross-validate, report, predict) is added as those stages land."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
        cases: int = typer.Option(40, "--cases", help="Number of synthetic cases."),
        seed: int = typer.Option(0, "--seed", help="Cohort seed."),
        quick: bool = typer.Option(False, "--quick", help="A small smoke version (8 cases)."),
        overwrite: bool = typer.Option(True, "--overwrite/--keep", help="Replace an earlier demo cohort."),
    ) -> None:
        """Write the built-in synthetic multi-phase cohort with a preview PNG per case, then summarise it."""
        from rich.console import Console

        from mpliver.data.phantom import write_cohort
        from mpliver.data.phantom.stats import print_cohort_table

        console = Console()
        n = 8 if quick else cases
        dataset = Path(out) / "cohort"
        console.print(f"[bold]mpliver demo[/bold]: writing {n} synthetic multi-phase cases to {dataset}")
        write_cohort(dataset, n, seed=seed, overwrite=overwrite, previews=True, progress=True)
        print_cohort_table(dataset, console=console)
        console.print(f"previews: {dataset / 'previews'}  (research software, synthetic data: not for clinical use)")
