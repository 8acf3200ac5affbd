"""`mpliver predict --model BUNDLE --out DIR (--pv PATH --art PATH [...] | --input DATASET_DIR)`.

Outputs on the PV grid: CASE.nii.gz (0/1/2), CASE_uncertainty.nii.gz, CASE_lesions.csv/.json and, with
--dicom-seg for a DICOM PV series, CASE_seg.dcm. Research software: every output says so.
"""

from __future__ import annotations

from pathlib import Path

import typer

_FILE_ENDINGS = (".nii.gz", ".nii")


def case_id_from(path: Path) -> str:
    """`CASE_0000.nii.gz` -> CASE; `study.nii.gz` -> study; a DICOM folder -> its name."""
    name = path.name
    for ending in _FILE_ENDINGS:
        if name.endswith(ending):
            name = name[: -len(ending)]
            if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
                name = name[:-5]
            break
    return name or "case"


def parse_values(text: str | None) -> tuple[int, ...] | None:
    from mpliver.errors import ConfigError

    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--liver-mask-values must be integers separated by commas, got '{text}'") from None


def parse_phases(pv: Path | None, art: Path | None, extra: list[str]) -> dict[str, Path]:
    from mpliver.errors import ConfigError

    phases: dict[str, Path] = {}
    if pv is not None:
        phases["PV"] = pv
    if art is not None:
        phases["ART"] = art
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--phase must look like NAME=PATH, got '{item}'")
        phases[name.strip()] = Path(value.strip())
    return phases


def _timings_table(timings: dict[str, float], title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    total = sum(timings.values()) or 1.0
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.2f}", f"{100 * seconds / total:.0f}%")
    table.add_row("total", f"{sum(timings.values()):.2f}", "")
    return table


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        model: Path = typer.Option(..., "--model", "-m", help="Model bundle (from `mpliver bundle`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        pv: Path | None = typer.Option(None, "--pv", help="PV phase: NIfTI file or DICOM series folder."),
        art: Path | None = typer.Option(None, "--art", help="ART phase: NIfTI file or DICOM series folder."),
        phase: list[str] = typer.Option(None, "--phase", help="Another phase as NAME=PATH (repeatable)."),
        liver_mask: Path | None = typer.Option(
            None, "--liver-mask", help="Liver mask on any grid (e.g. TotalSegmentator output); with --input, "
            "a folder of CASE.nii.gz. Default: the bundle's liver model."),
        liver_mask_values: str | None = typer.Option(
            None, "--liver-mask-values", help="Label values that mean liver in --liver-mask, e.g. 5 for "
            "TotalSegmentator (default: any non-zero)."),
        case_id: str | None = typer.Option(None, "--case-id", help="Output name (default: from --pv)."),
        input_dir: Path | None = typer.Option(
            None, "--input", help="Dataset folder: predict every case of imagesTs/ (or imagesTr/)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        tta: bool = typer.Option(False, "--tta", help="Test-time augmentation with flips (4x slower)."),
        dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Also write CASE_seg.dcm (DICOM PV only)."),
        registration: str | None = typer.Option(
            None, "--registration", help="liver (label-free rigid, default) or none (header geometry)."),
        batch_size: int = typer.Option(16, "--batch-size", help="Slices per network batch."),
        timings: bool = typer.Option(False, "--timings", help="Print the time of each stage."),
    ) -> None:
        """Segment liver tumours in new studies: label map, uncertainty map and lesion report."""
        from rich.console import Console

        from mpliver.engine.bundle import load_bundle
        from mpliver.errors import ConfigError
        from mpliver.io.atomic import check_writable

        console = Console(stderr=True)
        phases = parse_phases(pv, art, phase or [])
        if input_dir is not None and phases:
            raise ConfigError("give either --input DATASET_DIR or phases (--pv/--art/--phase), not both")
        if input_dir is None and not phases:
            raise ConfigError("give the phases (--pv PATH --art PATH) or --input DATASET_DIR")
        values = parse_values(liver_mask_values)
        check_writable(out)  # a full disk or read-only --out is found now, not after the inference
        bundle = load_bundle(model)
        console.print(f"[bold]mpliver predict[/bold]: {bundle.describe()}")
        if bundle.synthetic:
            console.print("[yellow]This model was trained on synthetic data only: research use, not for "
                          "clinical use.[/yellow]")
        if input_dir is not None:
            _batch(console, bundle, input_dir, out, liver_mask, values, device, tta, batch_size,
                   registration, dicom_seg, timings)
        else:
            _single(console, bundle, phases, out, liver_mask, values, case_id, device, tta, batch_size,
                    registration, dicom_seg, timings)


def _stage_progress(console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=True)


def _single(console, bundle, phases, out, liver_mask, values, case_id, device, tta, batch_size,
            registration, dicom_seg, timings) -> None:
    from rich.table import Table

    from mpliver.engine.predict import STAGES, predict, write_outputs

    case = case_id or case_id_from(phases.get("PV", next(iter(phases.values()))))
    if dicom_seg and "PV" in phases and not phases["PV"].is_dir():
        from mpliver.errors import ConfigError

        raise ConfigError("--dicom-seg needs the PV phase as a DICOM series folder")
    with _stage_progress(console) as bar:
        task = bar.add_task(f"{case}", total=len(STAGES) + 1)

        def on_stage(name: str) -> None:
            bar.update(task, description=f"{case}: {name}", completed=STAGES.index(name))

        result = predict(bundle, phases, liver_mask=liver_mask, liver_mask_values=values, case_id=case,
                         device=device, tta=tta, batch_size=batch_size, registration=registration,
                         on_stage=on_stage)
        bar.update(task, description=f"{case}: writing", completed=len(STAGES))
        paths = write_outputs(result, out, dicom_seg=dicom_seg, meta={"model": bundle.model_config.name})
    table = Table(title=f"{case}: {len(result.lesions)} lesion(s)")
    for column in ("lesion", "volume mL", "diameter mm", "mean u", "slices"):
        table.add_column(column, justify="right")
    for row in result.lesions[:20]:
        table.add_row(str(row["lesion"]), f"{row['volume_ml']:.2f}",
                      f"{row['longest_axial_diameter_mm']:.1f}", f"{row['mean_uncertainty']:.2f}",
                      f"{row['first_slice']}-{row['last_slice']}")
    console.print(table)
    if timings:
        console.print(_timings_table(result.timings, f"{case}: seconds per stage"))
    console.print(f"written: {', '.join(str(p) for p in paths.values())}")


def _batch(console, bundle, input_dir, out, liver_mask, values, device, tta, batch_size, registration,
           dicom_seg, timings) -> None:
    from mpliver.engine.predict import STAGES
    from mpliver.engine.predict_batch import predict_dataset
    from mpliver.errors import ConfigError

    if dicom_seg:
        raise ConfigError("--dicom-seg needs a DICOM PV series; --input datasets hold NIfTI files")
    with _stage_progress(console) as bar:
        studies = bar.add_task("studies", total=None)
        study = bar.add_task("", total=len(STAGES) + 1, visible=False)
        current = {"case": ""}

        def on_plan(cases: list[str]) -> None:
            bar.update(studies, total=len(cases))

        def on_case(case: str, status: str) -> None:
            if status == "start":
                current["case"] = case
                bar.update(study, description=case, completed=0, visible=True)
                return
            bar.advance(studies)
            if status.startswith("failed"):
                console.print(f"[red]{case}: {status}[/red]")
            elif status == "skipped":
                console.print(f"{case}: already done, skipped")

        def on_stage(name: str) -> None:
            bar.update(study, description=f"{current['case']}: {name}", completed=STAGES.index(name))

        summary = predict_dataset(bundle, input_dir, out, liver_mask_dir=liver_mask, liver_mask_values=values,
                                  device=device, tta=tta, batch_size=batch_size, registration=registration,
                                  on_case=on_case, on_stage=on_stage, on_plan=on_plan)
    shard = f" (rank {summary.rank} of {summary.world_size})" if summary.world_size > 1 else ""
    console.print(f"images{summary.split}{shard}: {len(summary.done)} predicted, {len(summary.skipped)} "
                  f"skipped (already done), {len(summary.failed)} failed, {summary.seconds:.1f} s")
    for case, reason in summary.failed.items():
        console.print(f"[red]failed[/red] {case}: {reason}")
    if timings and summary.done:
        per = {k: v / len(summary.done) for k, v in summary.timings.items()}
        console.print(_timings_table(per, f"mean seconds per study over {len(summary.done)} studies"))
    if summary.failed:
        raise typer.Exit(1)
