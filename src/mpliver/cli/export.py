"""`mpliver export --model BUNDLE --format onnx|torchscript --out FILE`, with a parity check."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        model: Path = typer.Option(..., "--model", "-m", help="Model bundle (from `mpliver bundle`)."),
        fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
        out: Path = typer.Option(..., "--out", "-o", help="File to write (.onnx / .pt)."),
        batch: int = typer.Option(2, "--batch", help="Batch size of the parity-check input."),
    ) -> None:
        """Export the tumour network (one input per phase, final logits out); checks parity within 1e-4."""
        # lazy: start-up time (every command module is imported for --help; torch with the bundle)
        from rich.console import Console

        from mpliver.inference.export import export_model

        result = export_model(model, fmt, out, batch=batch)
        Console(stderr=True).print(
            f"exported {result.format} to {result.path} (inputs {', '.join(result.input_names)}; logits); "
            f"parity: max |exported - PyTorch| = {result.max_abs_diff:.2e} <= {result.tolerance:g}")
