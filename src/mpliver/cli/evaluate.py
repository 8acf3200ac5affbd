"""`mpliver evaluate PRED_DIR LABEL_DIR --out OUT_DIR`: score predicted label maps against the references."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from mpliver.errors import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        pred_dir: Path = typer.Argument(..., help="Folder of predicted label maps CASE.nii.gz (tumour 2)."),
        label_dir: Path = typer.Argument(..., help="Folder of reference label maps CASE.nii.gz (tumour 2)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (per_case.csv, summary.json, ...)."),
        dataset: Path | None = typer.Option(
            None, "--dataset", help="Dataset folder whose dataset.json gives tumour types "
            "(default: LABEL_DIR/../dataset.json when present)."),
        missing_as_empty: bool = typer.Option(
            False, "--missing-as-empty", help="Score a case without a prediction as an empty prediction "
            "instead of stopping."),
        structure: str = typer.Option(
            "tumor", "--structure", help="What to score: tumor (label 2) or liver (labels 1 and 2 together, "
            "the liver with its tumours, e.g. for the stage-1 liver model)."),
    ) -> None:
        """The six metrics of docs/method.md §5 (DPC, DG, VOE, RVD, ASSD, RMSD) and lesion detection."""
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import Progress
        from rich.table import Table

        from mpliver.evaluation.aggregate import summarize_by_type
        from mpliver.evaluation.evaluate import EvaluationWarning, evaluate_folders, read_per_case_csv
        from mpliver.evaluation.tables import LESION_METRICS, SIX_METRICS, format_mean_sd

        foregrounds = {"tumor": (2,), "liver": (1, 2)}
        if structure not in foregrounds:
            raise ConfigError(f"--structure must be tumor or liver, got '{structure}'")

        console = Console()  # results to stdout; progress and warnings to stderr
        log = Console(stderr=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EvaluationWarning)
            with Progress(console=log, transient=True) as bar:
                task = bar.add_task("evaluating", total=None)
                summary = evaluate_folders(pred_dir, label_dir, out, dataset=dataset,
                                           missing_as_empty=missing_as_empty,
                                           foreground=foregrounds[structure],
                                           progress=lambda case: bar.advance(task))
        for w in caught:
            if issubclass(w.category, EvaluationWarning):
                log.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", soft_wrap=True)

        metrics = SIX_METRICS + LESION_METRICS
        table = Table(title=f"{structure}: {summary['n_cases']} cases (mean ± SD over cases; DG pooled)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, title in metrics:
            table.add_row(title, format_mean_sd(summary, key))
        console.print(table)
        if summary.get("n_missing_predictions"):
            console.print(f"[yellow]{summary['n_missing_predictions']} case(s) had no prediction and were "
                          "scored as empty.[/yellow]")

        if (out / "per_type.csv").exists():
            by_type = summarize_by_type(read_per_case_csv(out / "per_case.csv"))
            per_type = Table(title="per tumour type")
            per_type.add_column("type")
            per_type.add_column("n", justify="right")
            for _, title in SIX_METRICS:
                per_type.add_column(title, justify="right")
            for ttype, s in by_type.items():
                per_type.add_row(ttype, str(s["n_cases"]), *(format_mean_sd(s, k) for k, _ in SIX_METRICS))
            console.print(per_type)
        console.print(f"written to {out}/ (per_case.csv, summary.json, summary.md"
                      f"{', per_type.csv, per_type.md' if (out / 'per_type.csv').exists() else ''})")
