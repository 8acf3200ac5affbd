"""`mpliver version`: print the package and key library versions."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print mpliver's version and those of its main dependencies."""
        import numpy
        import torch

        import mpliver

        typer.echo(f"mpliver {mpliver.__version__} (torch {torch.__version__}, numpy {numpy.__version__})")
