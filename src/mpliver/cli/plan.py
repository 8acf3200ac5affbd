"""`mpliver plan`: assign tumour types and type-stratified folds to a dataset (stored in its dataset.json)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        dataset: Path = typer.Argument(..., help="Dataset folder in the case layout."),
        types: Path | None = typer.Option(None, "--types", help="CSV with columns case,tumor_type."),
        folds: int = typer.Option(5, "--folds", help="Number of cross-validation folds."),
        seed: int = typer.Option(0, "--seed", help="Seed of the fold shuffle."),
        allow_other_types: bool = typer.Option(False, "--allow-other-types",
                                               help="Keep types other than cyst, FNH, HEM, HCC, METS."),
    ) -> None:
        """Assign tumour types (from --types, else those already stored) and folds stratified by type.

        Folds are stored in dataset.json so that every experiment uses the same split.
        """
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console
        from rich.table import Table

        from mpliver.data.plan import fold_type_counts, plan_dataset

        table = plan_dataset(dataset, types, num_folds=folds, seed=seed, allow_other_types=allow_other_types)
        counts = fold_type_counts(table)
        all_types = sorted({t for per in counts.values() for t in per})
        out = Table(title=f"{dataset}: cases per fold and tumour type")
        out.add_column("fold", justify="right")
        for t in all_types:
            out.add_column(t, justify="right")
        out.add_column("total", justify="right")
        for f, per in counts.items():
            out.add_row(str(f), *(str(per.get(t, 0)) for t in all_types), str(sum(per.values())))
        Console().print(out)
