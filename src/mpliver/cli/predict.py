"""`mpliver predict --model BUNDLE [BUNDLE ...] --out DIR (--pv PATH --art PATH [...] | --input DATASET_DIR)`.

Outputs on the PV grid: CASE.nii.gz (0/1/2), CASE_uncertainty.nii.gz, CASE_lesions.csv/.json with the
notice sidecar CASE_lesions_notice.txt, with --save-probabilities CASE_probability.nii.gz and, with
--dicom-seg for a DICOM PV series, CASE_seg.dcm. Research software: every output says so. The lesion table
and the list of written files go to stdout; progress, warnings and timings to stderr.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from mpliver.errors import RESEARCH_NOTICE, ConfigError, InputWarning

_FILE_ENDINGS = (".nii.gz", ".nii", ".zip")
_SOURCE_HELP = (" A DICOM folder, study tree or .zip may end in ::series=UID|NUMBER|TEXT,group=N to pick one "
                "series and acquisition (see `mpliver dicom ls`).")


def case_id_from(path: Path) -> str:
    """`CASE_0000.nii.gz` -> CASE; `study.nii.gz` -> study; a DICOM folder (or .zip) -> its name."""
    name = Path(str(path).partition("::")[0]).name
    for ending in _FILE_ENDINGS:
        if name.endswith(ending):
            name = name[: -len(ending)]
            if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
                name = name[:-5]
            break
    return name or "case"


def parse_values(text: str | None) -> tuple[int, ...] | None:
    """The label values of `--liver-mask-values` ('5' or '5,6'); None when not given."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--liver-mask-values must be integers separated by commas, got '{text}'") from None


def parse_phases(pv: Path | None, art: Path | None, extra: list[str]) -> dict[str, Path]:
    """{phase name: source} from --pv, --art and the NAME=PATH of --phase."""
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
    from rich.table import Table  # lazy: start-up time (every command module is imported for --help)

    table = Table(title=title)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    total = sum(timings.values()) or 1.0
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.2f}", f"{100 * seconds / total:.0f}%")
    table.add_row("total", f"{sum(timings.values()):.2f}", "")
    return table


_EPILOG = (
    "Several bundles (--model A B C, or -m A -m B) are a fold ensemble: the mean of their tumour softmax; "
    "they must take the same phases and pre-processing. "
    "To shard a batch over GPUs, run the same command under torchrun, e.g. "
    "`torchrun --standalone --nproc_per_node 4 -m mpliver.cli predict --model B --input DS --out OUT "
    "--device cuda`: rank r predicts cases r, r + 4, ... on GPU LOCAL_RANK into the same --out folder, "
    "with no communication between ranks; a rerun skips finished cases (--overwrite redoes them). "
    "--workers N pipelines each rank's cases: N - 1 processes read, register and pre-process the next "
    "studies while this one runs the network, and a thread writes; at most --max-in-flight studies (default "
    "N + 1) are in memory at once; the outputs are the same bytes as with --workers 1."
)


_PRECISION_HELP = (
    "Network arithmetic: auto (bf16 autocast on GPU, fp32 on the CPU), fp32, or bf16 (autocast on the CPU "
    "too: faster on CPUs with bf16 instructions, AVX512-BF16 or AMX, but the logits differ from fp32 by more "
    "than the 1e-4 parity tolerance; see benchmarks/RESULTS.md).")


def register(app: typer.Typer) -> None:
    @app.command("predict", epilog=_EPILOG)
    def predict(
        model: list[Path] = typer.Option(
            ..., "--model", "-m", metavar="BUNDLE", help="Model bundle (from `mpliver bundle`); several for "
            "a fold ensemble (--model A B C or -m A -m B)."),
        more_models: list[Path] = typer.Argument(None, hidden=True, metavar="BUNDLE"),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        pv: Path | None = typer.Option(None, "--pv", help="PV phase: NIfTI file or DICOM series folder."
                                       + _SOURCE_HELP),
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
            None, "--input", "-i", help="Dataset folder: predict every case of imagesTs/ (or imagesTr/)."),
        split: str | None = typer.Option(
            None, "--split", help="With --input: Tr or Ts (imagesTr/ or imagesTs/); default imagesTs/ when "
            "it holds cases, else imagesTr/."),
        cases: str | None = typer.Option(
            None, "--cases", help="With --input: only these cases, names or shell patterns separated by "
            "commas (e.g. 'liver_00*,case_7')."),
        overwrite: bool = typer.Option(
            False, "--overwrite/--no-overwrite", help="With --input: predict cases whose outputs exist again "
            "(default: skip them, with a warning when their report names other bundles)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or gpu (= cuda)."),
        tta: bool = typer.Option(False, "--tta/--no-tta", help="Test-time augmentation with flips (4x "
                                 "slower)."),
        save_probabilities: bool = typer.Option(
            False, "--save-probabilities", help="Also write CASE_probability.nii.gz: the tumour probability "
            "(float32, 0 outside the liver); probability > --threshold is the label map's tumour."),
        strict: bool = typer.Option(
            False, "--strict", help="Refuse (error) an implausible liver mask instead of warning."),
        dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Also write CASE_seg.dcm (DICOM PV only)."),
        registration: str | None = typer.Option(
            None, "--registration", help="liver (label-free rigid, default) or none (header geometry)."),
        batch_size: int = typer.Option(16, "--batch-size", help="Slices per network batch."),
        workers: int = typer.Option(
            1, "--workers", help="With --input: processes per rank. 1 runs the studies one after another; "
            "N >= 2 overlaps reading, registration and pre-processing of the next studies (N - 1 processes) "
            "with the network of the current one (this process), writing in the background; same outputs."),
        max_in_flight: int | None = typer.Option(
            None, "--max-in-flight", help="With --input --workers N: at most this many studies in memory at "
            "once (default N + 1)."),
        precision: str = typer.Option("auto", "--precision", help=_PRECISION_HELP),
        threshold: float = typer.Option(
            0.5, "--threshold", help="Tumour where the probability exceeds this (the paper's 0.5)."),
        hysteresis: float | None = typer.Option(
            None, "--hysteresis", help="Keep a tumour component only if it holds a voxel with probability "
            ">= this (e.g. 0.8; default off)."),
        min_lesion_ml: float = typer.Option(
            0.0, "--min-lesion-ml", help="Drop tumour components smaller than this many mL (0: off)."),
        timings: bool = typer.Option(False, "--timings", help="Print the time of each stage."),
    ) -> None:
        """Segment liver tumours in new studies: label map, uncertainty map and lesion report."""
        from mpliver.inference.postprocess import Postprocess  # lazy: start-up time (scipy)

        phases = parse_phases(pv, art, phase or [])
        _check_arguments(phases, input_dir, split, cases, overwrite, workers, max_in_flight, more_models)
        values = parse_values(liver_mask_values)
        options = {"tta": tta, "batch_size": batch_size, "registration": registration, "strict": strict,
                   "probabilities": save_probabilities, "workers": workers, "max_in_flight": max_in_flight,
                   "precision": precision,
                   "postprocess": Postprocess(threshold, hysteresis, min_lesion_ml)}
        console, bundles = _load_bundles(out, [*model, *(more_models or [])])
        if input_dir is not None:
            only = [c.strip() for c in cases.split(",") if c.strip()] if cases else None
            _batch(console, bundles, input_dir, out, liver_mask, values, device, dicom_seg, timings,
                   split, only, overwrite, options)
        else:
            _single(console, bundles, phases, out, liver_mask, values, case_id, device, dicom_seg, timings,
                    options)


def _check_arguments(phases: dict[str, Path], input_dir: Path | None, split: str | None, cases: str | None,
                     overwrite: bool, workers: int, max_in_flight: int | None,
                     more_models: list[Path] | None) -> None:
    """A ConfigError for options that do not go together (phases and --input, batch options without it) and
    for a positional argument that is not a bundle."""
    if input_dir is not None and phases:
        raise ConfigError("give either --input DATASET_DIR or phases (--pv/--art/--phase), not both")
    if input_dir is None and not phases:
        raise ConfigError("give the phases (--pv PATH --art PATH) or --input DATASET_DIR")
    if input_dir is None and (split or cases or overwrite):
        raise ConfigError("--split, --cases and --overwrite choose cases of --input DATASET_DIR")
    if input_dir is None and (workers != 1 or max_in_flight is not None):
        raise ConfigError("--workers and --max-in-flight pipeline a batch: use them with --input "
                          "DATASET_DIR")
    for extra in more_models or []:
        if not extra.is_file():
            raise ConfigError(f"unexpected argument '{extra}': predict takes no positional arguments "
                              "other than more bundles after --model")


def _load_bundles(out: Path, paths: list[Path]):
    """(stderr console, the bundles) once --out is known to be writable: a full disk or read-only --out is
    found now, not after the inference. Each bundle is described on stderr."""
    from rich.console import Console  # lazy: start-up time (every command module is imported for --help)

    from mpliver.inference.ensemble import load_ensemble  # lazy: start-up time (torch)
    from mpliver.io.atomic import check_writable  # lazy: start-up time

    console = Console(stderr=True)
    check_writable(out)
    bundles = load_ensemble(paths)
    for bundle in bundles:
        console.print(f"[bold]mpliver predict[/bold]: {bundle.describe()}")
    if any(b.synthetic for b in bundles):
        console.print(f"[yellow]This model was trained on synthetic data only; {RESEARCH_NOTICE}.[/yellow]")
    return console, bundles


def _stage_progress(console):
    # lazy: start-up time (every command module is imported for --help)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=True)


def _check_dicom_seg_source(source: Path, primary: str) -> None:
    """A ConfigError (or the series' own error) when `source`, the primary phase, cannot carry a DICOM-SEG."""
    # lazy: start-up time (pydicom)
    from mpliver.io.dicom import check_dicom_seg_source
    from mpliver.io.dicom_study import check_not_single_file, is_dicom_source

    check_not_single_file(Path(source), f"{primary} phase")
    if not is_dicom_source(source):
        raise ConfigError(f"--dicom-seg needs the {primary} phase as a DICOM series folder")
    with warnings.catch_warnings():  # what the series drops is said once, when predict reads it
        warnings.simplefilter("ignore", InputWarning)
        check_dicom_seg_source(source)


def _single(console, bundles, phases, out, liver_mask, values, case_id, device, dicom_seg, timings,
            options) -> None:
    # lazy: start-up time (rich; torch with the predictor). `predict` and `write_outputs` are looked up
    # when the command runs, so tests can replace them on the module
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mpliver.inference.predict import STAGES, predict, write_outputs

    primary = bundles[0].phases[0]  # the phase whose grid the outputs (and a SEG) lie on; PV by default
    case = case_id or case_id_from(phases.get(primary, next(iter(phases.values()))))
    if dicom_seg and primary in phases:  # before the network runs: a SEG needs a usable DICOM series
        _check_dicom_seg_source(phases[primary], primary)
    with _stage_progress(console) as bar:
        task = bar.add_task(f"{case}", total=len(STAGES) + 1)

        def on_stage(name: str) -> None:
            bar.update(task, description=f"{case}: {name}", completed=STAGES.index(name))

        result = predict(bundles, phases, liver_mask=liver_mask, liver_mask_values=values, case_id=case,
                         device=device, tta=options["tta"], batch_size=options["batch_size"],
                         registration=options["registration"], on_stage=on_stage, strict=options["strict"],
                         precision=options["precision"], postprocess=options["postprocess"])
        if result.liver_check is not None and not result.liver_check.ok:
            line = escape(result.liver_check.message(case, result.liver_origin))
            console.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
        bar.update(task, description=f"{case}: writing", completed=len(STAGES))
        paths = write_outputs(result, out, dicom_seg=dicom_seg, meta={"model": bundles[0].model_config.name},
                              probabilities=options["probabilities"])
    check = result.liver_check
    liver_ml = f", liver {check.volume_ml:.0f} mL" if check is not None else ""
    table = Table(title=f"{case}: {len(result.lesions)} lesion(s){liver_ml}")
    for column in ("lesion", "volume mL", "diameter mm", "mean u", "slices", "incomplete"):
        table.add_column(column, justify="right")
    for row in result.lesions[:20]:
        table.add_row(str(row["lesion"]), f"{row['volume_ml']:.2f}",
                      f"{row['longest_axial_diameter_mm']:.1f}", f"{row['mean_uncertainty']:.2f}",
                      f"{row['first_slice']}-{row['last_slice']}", "yes" if row["incomplete"] else "")
    results = Console()  # results to stdout, progress and logs to stderr
    results.print(table)
    if timings:
        console.print(_timings_table(result.timings, f"{case}: seconds per stage"))
    results.print(f"written: {', '.join(str(p) for p in paths.values())}", highlight=False, markup=False,
                  soft_wrap=True)


def _batch(console, bundles, input_dir, out, liver_mask, values, device, dicom_seg, timings, split, only,
           overwrite, options) -> None:
    # lazy: start-up time (rich; torch with the predictor)
    from rich.console import Console
    from rich.markup import escape

    from mpliver.inference.batch import predict_dataset
    from mpliver.inference.clock import STAGES

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
                console.print(f"{case}: already done, skipped (--overwrite to predict it again)")

        def on_warning(case: str, line: str) -> None:
            console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)

        def on_stage(name: str) -> None:
            bar.update(study, description=f"{current['case']}: {name}", completed=STAGES.index(name))

        summary = predict_dataset(bundles, input_dir, out, liver_mask_dir=liver_mask,
                                  liver_mask_values=values,
                                  device=device, tta=options["tta"], batch_size=options["batch_size"],
                                  registration=options["registration"], on_case=on_case, on_stage=on_stage,
                                  on_plan=on_plan, split=split, cases=only, overwrite=overwrite,
                                  strict=options["strict"], probabilities=options["probabilities"],
                                  on_warning=on_warning, workers=options["workers"],
                                  max_in_flight=options["max_in_flight"], precision=options["precision"],
                                  postprocess=options["postprocess"])
    shard = f" (rank {summary.rank} of {summary.world_size})" if summary.world_size > 1 else ""
    warned = f", {len(summary.warnings)} with an implausible liver mask" if summary.warnings else ""
    Console().print(f"images{summary.split}{shard}: {len(summary.done)} predicted, {len(summary.skipped)} "
                    f"skipped (already done), {len(summary.failed)} failed{warned}, {summary.seconds:.1f} s",
                    highlight=False, soft_wrap=True)
    for case, reason in summary.failed.items():
        console.print(f"[red]failed[/red] {case}: {reason}")
    if timings and summary.done:
        per = {k: v / len(summary.done) for k, v in summary.timings.items()}
        console.print(_timings_table(per, f"mean seconds per study over {len(summary.done)} studies"))
    if summary.failed:
        raise typer.Exit(1)
