"""`mpliver inspect DATASET`: realism figures measured from a labelled dataset's images, next to the published
ranges they should fall in, and the per-tumour-type detail."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mpliver.cli._display import table


def _out_red(cell: str) -> str:
    return "[red]OUT[/red]" if cell == "OUT" else cell


def _measure(ds, cases: list[str], console: Console) -> list[dict]:
    """`dataset_statistics` under a transient `measuring` bar."""
    from mpliver.data.phantom.stats import dataset_statistics  # lazy: start-up time (scipy)

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("measuring", total=len(cases))
        return dataset_statistics(ds, cases, progress=lambda _case: bar.advance(task))


def _console(phases: list[str]) -> Console:
    """A console wide enough for the per-type table's columns (six figures per phase)."""
    return Console(width=max(110, 30 + 60 * len(phases)))


def cohort_table(summary: dict[str, dict], phases: list[str], title: str = "") -> Table:
    """The per-tumour-type table of `summarize_by_type` output: Δ, lesion and liver HU, noise SD and the % of
    lesions the phase does not show (|CNR| < 0.5, docs/method.md §4.7) per phase."""
    from mpliver.data.phantom.stats import FAINT_CNR, cohort_rows  # lazy: start-up time (scipy)

    header, rows = cohort_rows(summary, phases)
    title = (title or "medians over cases (HU); Δ = median lesion − median liver") + \
        f"; faint % = lesions with |CNR| < {FAINT_CNR} (docs/method.md §4.7)"
    return table(header, rows, title, left=1)


def print_cohort_table(dataset, console: Console | None = None) -> dict[str, dict]:
    """Measure a labelled dataset (a folder or `Dataset`) and print the per-type table; -> the summary."""
    from mpliver.data.phantom.stats import summarize_by_type  # lazy: start-up time (scipy)
    from mpliver.io.layout import Dataset  # lazy: start-up time

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    cases = ds.validate()
    console = console or _console(ds.phases)
    summary = summarize_by_type(_measure(ds, cases, console), ds.phases)
    title = f"{ds.root}: medians over cases (HU); Δ = median lesion − median liver"
    console.print(cohort_table(summary, ds.phases, title))
    return summary


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        dataset: Path = typer.Argument(..., help="A dataset folder in the case layout, with labels."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (realism, per type, per case)."),
        sources: bool = typer.Option(False, "--sources", help="Also print the source of every range."),
        check: bool = typer.Option(
            False, "--check", help="Exit with status 1 when a measured median lies outside its range."
        ),
    ) -> None:
        """Per phase: HU of aorta, portal vein and liver, lesion − liver Δ per tumour type and noise SD, each
        as the median over cases [5th-95th percentile] next to its published range (docs/phantom.md).

        Medians are over the tumour (label 2) and liver (label 1) voxels of each case, then over the cases;
        non-primary phases use labelsTr_phases/ when present. Aorta and portal vein need the phantom's
        structuresTr/ maps. Noise SD is the robust SD of the in-plane high-pass residual inside the liver.
        """
        # lazy: start-up time (scipy); every command module is imported to build the app
        from mpliver.data.phantom.realism import all_inside, realism_rows, realism_summary, source_rows
        from mpliver.data.phantom.stats import dataset_statistics, summarize_by_type, type_order
        from mpliver.io.layout import Dataset

        ds = Dataset(dataset)
        cases = ds.validate()
        console = _console(ds.phases)
        rows = dataset_statistics(ds, cases) if as_json else _measure(ds, cases, console)
        realism = realism_summary(rows, ds.phases)
        summary = summarize_by_type(rows, ds.phases)
        if as_json:
            per_type = {t: summary[t] for t in type_order(summary)}
            typer.echo(json.dumps({"dataset": str(ds.root), "phases": ds.phases, "realism": realism,
                                   "all_inside": all_inside(realism), "per_type": per_type, "cases": rows},
                                  indent=2))
        else:
            title = f"{ds.root} ({len(cases)} cases): median over cases [5th-95th pct] vs the published range"
            header, cells = realism_rows(realism, ds.phases)
            console.print(table(header, cells, title, styles=_out_red, center=("",)))
            if sources:
                console.print(table(("figure", "phase", "source"), source_rows(realism, ds.phases),
                                    "sources of the ranges (docs/phantom.md)", left=3))
            console.print(cohort_table(summary, ds.phases, "per tumour type: medians over cases (HU)"))
            verdict = "every measured median inside its range" if all_inside(realism) else \
                "some medians OUTSIDE their range (marked OUT)"
            console.print(verdict)
        if check and not all_inside(realism):
            raise typer.Exit(1)
