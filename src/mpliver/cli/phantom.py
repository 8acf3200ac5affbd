"""`mpliver phantom OUT_DIR`: write the synthetic multi-phase cohort (docs/method.md §6) as a dataset."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from mpliver.cli._display import count_bar
from mpliver.errors import RESEARCH_NOTICE, ConfigError


def _triple(text: str | None, what: str, cast):
    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(cast(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"--{what} must be three comma-separated numbers (i,j,k), got '{text}'")
    return values


def register(app: typer.Typer) -> None:
    @app.command("phantom")
    def phantom(
        out_dir: Path = typer.Argument(
            ..., help="Output folder (created; must be empty or hold this cohort)."
        ),
        cases: int = typer.Option(121, "--cases", help="Number of cases (121 = the paper's cohort)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; each case depends only on (seed, index)."),
        size: str = typer.Option(
            "small", "--size", help="small (160x160x48 at 2x2x4 mm) or paper (512x512, 0.7 mm)."
        ),
        shape: str = typer.Option(None, "--shape", help="Override the grid, e.g. 128,128,40."),
        spacing: str = typer.Option(None, "--spacing", help="Override the spacing in mm, e.g. 2.5,2.5,5."),
        phases: str = typer.Option(
            "PV,ART", "--phases",
            help="Ordered phases, the first primary: NC, EART, ART, PV, EQP, DELAY (e.g. EQP,ART).",
        ),
        randomize: bool = typer.Option(
            False, "--randomize",
            help="Domain randomisation for sim-to-real training, with cirrhotic livers (docs/phantom.md).",
        ),
        cirrhosis: float = typer.Option(
            None, "--cirrhosis", min=0.0, max=1.0,
            help="Share of cases with a cirrhotic liver (default: 0, or 0.5 with --randomize).",
        ),
        multifocal: float = typer.Option(
            None, "--multifocal", min=0.0, max=1.0,
            help="Share of METS, HCC and cyst cases with 6-20 lesions (default: 0).",
        ),
        subcapsular: float = typer.Option(
            None, "--subcapsular", min=0.0, max=1.0,
            help="Share of lesions that reach the liver surface (default: 0).",
        ),
        folds: int = typer.Option(5, "--folds", help="Number of type-stratified folds."),
        workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", help="Parallel processes."),
        no_previews: bool = typer.Option(False, "--no-previews", help="Skip the preview PNGs."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different dataset in OUT_DIR."),
    ) -> None:
        """Write a synthetic multi-phase liver CT cohort (default PV + ART) with the paper's tumour-type mix.

        Synthetic data for research and testing only; models trained on it are not for clinical use.
        """
        # lazy: start-up time (scipy, matplotlib); every command module is imported to build the app
        from mpliver.data.phantom import PhantomConfig, cohort_composition, write_cohort
        from mpliver.data.phantom.kinetics import parse_phases
        from mpliver.io.atomic import check_writable

        config = PhantomConfig.preset(size)
        overrides: dict = {"phases": parse_phases(phases)}
        if shape is not None:
            overrides["shape"] = _triple(shape, "shape", int)
        if spacing is not None:
            overrides["spacing"] = _triple(spacing, "spacing", float)
        config = replace(config, **overrides)
        if randomize:
            config = config.randomized()
        if cirrhosis is not None:
            config = replace(config, cirrhosis_prob=cirrhosis)
        if multifocal is not None:
            config = replace(config, multifocal_prob=multifocal)
        if subcapsular is not None:
            config = replace(config, subcapsular_share=subcapsular)
        check_writable(out_dir)
        start = time.perf_counter()
        with count_bar("phantom") as progress:  # progress to stderr, results to stdout
            root = write_cohort(out_dir, cases, seed=seed, config=config, overwrite=overwrite,
                                previews=not no_previews, progress=progress, num_folds=folds,
                                workers=max(1, workers))
        took = time.perf_counter() - start
        mix = ", ".join(f"{n} {t}" for t, n in cohort_composition(cases).items())
        Console().print(
            f"wrote {cases} synthetic cases ({mix}) to {root} in {took:.1f} s "
            f"({took / cases:.2f} s per case, {max(1, workers)} worker(s)); {RESEARCH_NOTICE}"
        )
