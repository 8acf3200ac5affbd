"""`mpliver version`: print the package and key library versions."""

from __future__ import annotations

import typer

from mpliver._version import __version__


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print mpliver's version and those of its main dependencies."""
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        import numpy
        import torch


        typer.echo(f"mpliver {__version__} (torch {torch.__version__}, numpy {numpy.__version__})")
