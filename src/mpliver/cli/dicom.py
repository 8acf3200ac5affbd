"""`mpliver dicom ls PATH`: the series and acquisition groups of a DICOM study (folder tree or .zip)."""

from __future__ import annotations

from pathlib import Path

import typer

dicom_app = typer.Typer(help="Look into DICOM studies before converting or predicting.", no_args_is_help=True)


@dicom_app.command("ls")
def ls(path: Path = typer.Argument(..., help="A DICOM series folder, study tree or .zip.")) -> None:
    """One row per series and acquisition group: the selector to read it (for --pv/--art/--phase and
    convert's CSV), UID, number, description, slices, spacing, z range, times and contrast hints."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from mpliver.io.dicom import study_rows
    from mpliver.io.dicom_stack import format_table

    rows = study_rows(path)
    shown = [k for k in rows[0] if any(r[k] for r in rows)]
    typer.echo(format_table([{k: r[k] for k in shown} for r in rows]))


def register(app: typer.Typer) -> None:
    app.add_typer(dicom_app, name="dicom")
