"""`mpliver inspect DATASET`: per-tumour-type realism figures measured from a labelled dataset's images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


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
        from rich.console import Console
        from rich.progress import Progress
        from rich.table import Table

        from mpliver.data.phantom.stats import dataset_statistics, summarize_by_type
        from mpliver.io.layout import TUMOR_TYPES, Dataset

        ds = Dataset(dataset)
        cases = ds.validate()
        phases = ds.phases
        if as_json:
            rows = dataset_statistics(ds, cases)
        else:
            with Progress(transient=True) as bar:
                task = bar.add_task("measuring", total=len(cases))
                rows = dataset_statistics(ds, cases, progress=lambda _case: bar.advance(task))
        summary = summarize_by_type(rows, phases)
        order = (
            [t for t in TUMOR_TYPES if t in summary]
            + sorted(set(summary) - set(TUMOR_TYPES) - {"all"})
            + ["all"]
        )
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "dataset": str(ds.root),
                        "phases": phases,
                        "per_type": {t: summary[t] for t in order},
                        "cases": rows,
                    },
                    indent=2,
                )
            )
            return
        table = Table(title=f"{ds.root}: medians over cases (HU); Δ = median lesion − median liver")
        table.add_column("type")
        table.add_column("cases", justify="right")
        for phase in phases:
            table.add_column(f"Δ {phase}", justify="right")
        for phase in phases:
            table.add_column(f"lesion {phase}", justify="right")
        for phase in phases:
            table.add_column(f"liver {phase}", justify="right")
        for phase in phases:
            table.add_column(f"noise SD {phase}", justify="right")
        for ttype in order:
            s = summary[ttype]
            table.add_row(
                ttype,
                str(s["cases"]),
                *[_fmt(s[p]["delta_hu"], True) for p in phases],
                *[_fmt(s[p]["lesion_hu"]) for p in phases],
                *[_fmt(s[p]["liver_hu"]) for p in phases],
                *[_fmt(s[p]["noise_sd"]) for p in phases],
            )
        Console(width=max(110, 30 + 40 * len(phases))).print(table)
