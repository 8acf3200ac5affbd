"""`mpliver inspect DATASET`: realism figures measured from a labelled dataset's images, next to the published
ranges they should fall in, and the per-tumour-type detail."""

from __future__ import annotations

import json
from pathlib import Path

import typer


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
        from rich.console import Console
        from rich.progress import Progress

        from mpliver.data.phantom.realism import all_inside, realism_summary, realism_table, sources_table
        from mpliver.data.phantom.stats import cohort_table, dataset_statistics, summarize_by_type, type_order
        from mpliver.io.layout import Dataset

        ds = Dataset(dataset)
        cases = ds.validate()
        console = Console(width=max(110, 30 + 36 * len(ds.phases)))
        if as_json:
            rows = dataset_statistics(ds, cases)
        else:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("measuring", total=len(cases))
                rows = dataset_statistics(ds, cases, progress=lambda _case: bar.advance(task))
        realism = realism_summary(rows, ds.phases)
        summary = summarize_by_type(rows, ds.phases)
        if as_json:
            per_type = {t: summary[t] for t in type_order(summary)}
            typer.echo(json.dumps({"dataset": str(ds.root), "phases": ds.phases, "realism": realism,
                                   "all_inside": all_inside(realism), "per_type": per_type, "cases": rows},
                                  indent=2))
        else:
            title = f"{ds.root} ({len(cases)} cases): median over cases [5th-95th pct] vs the published range"
            console.print(realism_table(realism, ds.phases, title))
            if sources:
                console.print(sources_table(realism, ds.phases))
            console.print(cohort_table(summary, ds.phases, "per tumour type: medians over cases (HU)"))
            verdict = "every measured median inside its range" if all_inside(realism) else \
                "some medians OUTSIDE their range (marked OUT)"
            console.print(verdict)
        if check and not all_inside(realism):
            raise typer.Exit(1)
