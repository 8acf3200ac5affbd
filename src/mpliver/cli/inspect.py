"""`mpliver inspect DATASET`: per-tumour-type realism figures measured from a labelled dataset's images."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        dataset: Path = typer.Argument(..., help="A dataset folder in the case layout, with labels."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (per type and per case) instead."),
    ) -> None:
        """Median lesion − liver HU difference and liver noise SD per tumour type and phase.

        Medians are over the tumour (label 2) and liver (label 1) voxels of each case, then over the cases of
        each type; non-PV phases use labelsTr_phases/ when present. Noise SD is the robust SD of the in-plane
        high-pass residual inside the liver.
        """
        from mpliver.data.phantom.stats import (
            dataset_statistics,
            print_cohort_table,
            summarize_by_type,
            type_order,
        )
        from mpliver.io.layout import Dataset

        ds = Dataset(dataset)
        if not as_json:
            print_cohort_table(ds)
            return
        cases = ds.validate()
        rows = dataset_statistics(ds, cases)
        summary = summarize_by_type(rows, ds.phases)
        per_type = {t: summary[t] for t in type_order(summary)}
        typer.echo(
            json.dumps(
                {"dataset": str(ds.root), "phases": ds.phases, "per_type": per_type, "cases": rows}, indent=2
            )
        )
