"""`mpliver preprocess DATASET --out CACHE`: register, mask, window, crop and cache every training case."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("preprocess")
    def preprocess(
        dataset: Path = typer.Argument(..., help="Dataset folder in the case layout."),
        out: Path = typer.Option(..., "--out", "-o", help="Cache folder (created; valid cases are reused)."),
        registration: str = typer.Option("liver", help="tumor-center (labels) | liver | none."),
        input_size: int = typer.Option(256, help="Slices are resized to N x N."),
        crop: bool = typer.Option(True, "--crop/--no-crop", help="Crop to the liver box, or whole slices."),
        margin_mm: float = typer.Option(10.0, help="Margin around the liver box in mm."),
        liver_masks: str = typer.Option(None, help="Liver mask files, e.g. 'masks/{case}.nii.gz'."),
        liver_values: str = typer.Option(None, help="Mask values meaning liver, e.g. 5."),
        axial_axis: int = typer.Option(None, help="Axial array axis (default: affine)."),
        all_slices: bool = typer.Option(False, "--all-slices", help="Keep every slice, not the liver range."),
        paper: bool = typer.Option(False, "--paper", help="Paper input: whole slices, 512, tumor-center."),
        workers: int = typer.Option(2, help="Cases processed in parallel."),
        wait: bool = typer.Option(False, "--wait", help="If another run holds the cache, wait for it "
                                  "(default: refuse)."),
    ) -> None:
        """Pre-process a dataset into a cache of memory-mapped slices (docs/method.md §4)."""
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from mpliver.data.cache import preprocess_dataset
        from mpliver.data.config import PreprocessConfig
        from mpliver.io.layout import Dataset

        params = dict(registration=registration, input_size=input_size, crop=crop, margin_mm=margin_mm,
                      axial_axis=axial_axis, keep_slices="all" if all_slices else "liver")
        if liver_masks:
            params.update(liver_mask_source="file", liver_mask_pattern=liver_masks)
        if liver_values:
            params["liver_mask_values"] = tuple(int(v) for v in liver_values.split(","))
        if paper:
            config = PreprocessConfig.paper(**{k: v for k, v in params.items()
                                               if k not in ("registration", "input_size", "crop")})
        else:
            config = PreprocessConfig(**params)
        total = len(Dataset(dataset).validate("Tr"))
        with Progress(TextColumn("[bold]preprocess"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[case]}"), TimeRemainingColumn(), transient=True,
                      console=Console(stderr=True)) as progress:  # progress to stderr, the result to stdout
            task = progress.add_task("cases", total=total, case="")

            def on_case(case: str, status: str) -> None:
                progress.update(task, advance=1, case=f"{case} ({status})")

            summary = preprocess_dataset(dataset, out, config, workers=workers, on_case=on_case,
                                         wait_for_lock=None if wait else 0.0)
        typer.echo(f"{len(summary.built)} case(s) built, {len(summary.reused)} reused -> {summary.manifest}")
