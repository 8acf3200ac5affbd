"""`mpliver experiments nnunet DATASET --out EXP [--folds K] [nnunet.epochs=N ...]`: the nnU-Net v2 row
(reached through `mpliver experiments`, whose SET argument it shares)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mpliver.extras import require_nnunet


def run(dataset: Path, out: Path, folds: int | None, overrides: list[str], peers: list[Path]) -> None:
    """Run the nnU-Net row and print its tables (see mpliver.experiments.nnunet)."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from rich.console import Console

    from mpliver.experiments.nnunet import NnunetBudget, run_nnunet_experiment

    require_nnunet("mpliver experiments nnunet")
    console = Console(stderr=True)
    budget = NnunetBudget.from_overrides(overrides)
    console.print(f"[bold]mpliver experiments[/bold] nnunet: nnU-Net v2 2d on CPU, {budget.epochs} epochs x "
                  f"{budget.iterations_per_epoch} iterations -> {out / 'nnunet'}")
    started = time.time()
    result = run_nnunet_experiment(dataset, out, folds=folds, budget=budget, peer_roots=peers,
                                   on_event=lambda msg: console.print(msg, markup=False, highlight=False))
    typer.echo((result.out_dir / "table1.md").read_text())
    typer.echo((result.out_dir / "table2.md").read_text())
    console.print(f"{time.time() - started:.0f} s; rows {', '.join(result.results)}; all tables: "
                  f"{result.out_dir / 'tables.md'}")
