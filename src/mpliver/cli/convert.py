"""`mpliver convert`: DICOM / DICOM-SEG / NIfTI studies -> the case layout; a layout dataset -> nnU-Net v2."""

from __future__ import annotations

from pathlib import Path

import typer

from mpliver.errors import ConfigError

_HELP = """Convert studies into the case layout, or a case-layout dataset into an nnU-Net v2 raw dataset.

\b
One case (repeat to add cases to the same dataset):
  mpliver convert --pv PV_DIR --art ART_DIR [--label SEG_OR_NIFTI] [--case-id ID] --out DATASET
Many cases from a CSV with columns case,pv,art[,label][,tumor_type] (paths relative to the CSV):
  mpliver convert --from-csv cases.csv --out DATASET
To nnU-Net v2 (ART resampled onto the PV grid; writes NNUNET_RAW/Dataset501_MPLiver/):
  mpliver convert DATASET --to nnunet --out NNUNET_RAW [--dataset-id 501 --name MPLiver] [--register]
  (--register: ART aligned to PV by mpliver's label-free liver registration, as `predict` does, with the
  label's liver as the PV liver mask; without it ART is only resampled through the headers)

Phases are DICOM series folders (or a study tree / .zip: add ::series=UID|NUMBER|TEXT,group=N to pick a
series and acquisition, see `mpliver dicom ls`) or NIfTI files. A label is a DICOM-SEG (segments named
liver / tumour) or a NIfTI label map (0 background, 1 liver, 2 tumour) on the PV grid. Cases without a
label go to imagesTs.
"""


def register(app: typer.Typer) -> None:
    @app.command("convert", help=_HELP)
    def convert(
        source: Path | None = typer.Argument(None, help="A case-layout dataset (only with --to nnunet)."),
        out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write or add to "
                                 "(nnU-Net: the raw root)."),
        pv: Path | None = typer.Option(None, "--pv", help="PV phase: DICOM series folder or NIfTI file."),
        art: Path | None = typer.Option(None, "--art", help="ART phase: DICOM series folder or NIfTI file."),
        label: Path | None = typer.Option(None, "--label", help="DICOM-SEG file/folder or NIfTI label."),
        case_id: str | None = typer.Option(None, "--case-id", help="Case id (default: next free case_NNN)."),
        tumor_type: str | None = typer.Option(None, "--tumor-type", help="cyst, FNH, HEM, HCC or METS."),
        from_csv: Path | None = typer.Option(None, "--from-csv", help="CSV: case,pv,art[,label],..."),
        to: str = typer.Option("layout", "--to", help="Output format: layout (default) or nnunet."),
        dataset_id: int = typer.Option(501, "--dataset-id", help="nnU-Net dataset id (1-999)."),
        name: str = typer.Option("MPLiver", "--name", help="nnU-Net dataset name."),
        resample_label: bool = typer.Option(False, "--resample-label",
                                            help="Resample a NIfTI label off the PV grid (nearest)."),
        label_mismatch_ok: bool = typer.Option(False, "--label-mismatch-ok",
                                               help="Accept a DICOM-SEG of another frame of reference, "
                                                    "series or patient than the PV series."),
        allow_other_types: bool = typer.Option(False, "--allow-other-types",
                                               help="Keep tumour types other than the five known ones."),
        pv_series: str | None = typer.Option(None, "--pv-series", help="Series UID, number or description "
                                             "text in a PV study folder."),
        art_series: str | None = typer.Option(None, "--art-series", help="Series UID, number or description "
                                              "text in an ART study folder."),
        label_map: str | None = typer.Option(None, "--label-map",
                                             help="Remap NIfTI label values, e.g. '5=1' (TotalSegmentator "
                                                  "liver); values not listed become background."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing cases or dataset."),
        register_phases: bool = typer.Option(False, "--register",
                                             help="--to nnunet: align ART to PV with mpliver's liver "
                                                  "registration (needs labels)."),
    ) -> None:
        from rich.console import Console  # lazy: keeps `mpliver --help` fast

        console = Console(stderr=True)
        if to == "nnunet":
            _check_nnunet_args(source, (pv, art, label, from_csv, case_id, pv_series, art_series, label_map))
            _to_nnunet(console, source, out, dataset_id, name, overwrite, register_phases)
            return
        _check_layout_args(to, source, register_phases)
        if from_csv is not None:
            if any(x is not None for x in (pv, art, label, case_id, tumor_type, pv_series, art_series)):
                raise ConfigError("--from-csv excludes --pv/--art/--label/--case-id/--tumor-type/--*-series")
            sources = _csv_sources(from_csv, allow_other_types)
        else:
            sources = [_one_source(out, pv, art, label, case_id, tumor_type, allow_other_types,
                                   {k: v for k, v in (("PV", pv_series), ("ART", art_series)) if v})]
        _to_layout(console, sources, out, overwrite, resample_label, _parse_label_map(label_map),
                   label_mismatch_ok)


def _check_nnunet_args(source: Path | None, case_options: tuple) -> None:
    """`--to nnunet` takes a case-layout DATASET and none of the options that describe one case."""
    if source is None:
        raise ConfigError("--to nnunet needs the case-layout DATASET as argument")
    if any(x is not None for x in case_options):
        raise ConfigError("--to nnunet takes a DATASET, not --pv/--art/--label/--from-csv/--case-id")


def _check_layout_args(to: str, source: Path | None, register_phases: bool) -> None:
    """Conversion into the case layout takes studies (--pv/--art or --from-csv), not a DATASET."""
    if register_phases:
        raise ConfigError("--register goes only with --to nnunet (the case layout keeps each phase's grid)")
    if to != "layout":
        raise ConfigError(f"--to must be 'layout' or 'nnunet', got '{to}'")
    if source is not None:
        raise ConfigError("a DATASET argument goes only with --to nnunet; use --pv/--art or --from-csv")


def _to_nnunet(console, source: Path, out: Path, dataset_id: int, name: str, overwrite: bool,
               register_phases: bool) -> None:
    """`--to nnunet`: export a case-layout dataset (ART registered to PV with `--register`)."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from mpliver.data.registration import liver_aligner
    from mpliver.io.nnunet import export_nnunet

    align, align_name = None, "registered"
    if register_phases:
        align, align_name = liver_aligner(), "registered by mpliver's label-free liver registration"
    with _progress(console, "nnU-Net export") as step:
        target = export_nnunet(source, out, dataset_id=dataset_id, name=name, overwrite=overwrite,
                               progress=step, align=align, align_name=align_name)
    typer.echo(f"wrote {target}")


def _csv_sources(from_csv: Path, allow_other_types: bool) -> list:
    """The cases of a `--from-csv` table."""
    from mpliver.io.convert import read_cases_csv  # lazy: keeps `mpliver --help` fast

    return read_cases_csv(from_csv, allow_other_types)


def _one_source(out: Path, pv: Path | None, art: Path | None, label: Path | None, case_id: str | None,
                tumor_type: str | None, allow_other_types: bool, series: dict[str, str]):
    """The one case given by --pv/--art/--label (its id: the next free case_NNN unless given)."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from mpliver.io.convert import CaseSource, next_case_id
    from mpliver.io.layout import normalize_tumor_type

    if pv is None and art is None:
        raise ConfigError("give the phases with --pv and --art (or many cases with --from-csv)")
    if pv is None or art is None:
        raise ConfigError(f"missing phase {'PV' if pv is None else 'ART'}: pass both --pv and --art")
    ttype = normalize_tumor_type(tumor_type, allow_other_types) if tumor_type else None
    return CaseSource(case_id or next_case_id(out), {"PV": pv, "ART": art}, label, ttype, series)


def _to_layout(console, sources: list, out: Path, overwrite: bool, resample_label: bool,
               label_map: dict[int, int] | None, label_mismatch_ok: bool) -> None:
    """Convert `sources` into the case layout at `out` and say which cases were written."""
    from mpliver.io.convert import convert_cases  # lazy: keeps `mpliver --help` fast

    with _progress(console, "converting") as step:
        ids = convert_cases(sources, out, overwrite=overwrite, resample_label=resample_label,
                            label_map=label_map, progress=step, label_mismatch_ok=label_mismatch_ok)
    more = " ..." if len(ids) > 10 else ""
    typer.echo(f"wrote {len(ids)} case(s) to {out}: {', '.join(ids[:10])}{more}")


def _parse_label_map(text: str | None) -> dict[int, int] | None:
    """'5=1,6=2' -> {5: 1, 6: 2}; targets must be 0, 1 or 2."""
    from mpliver.io.labels import LABELS  # lazy: keeps `mpliver --help` fast (mpliver.io loads pydicom)

    if not text:
        return None
    out = {}
    for item in text.split(","):
        try:
            src, dst = (int(x) for x in item.split("="))
        except ValueError:
            raise ConfigError(f"--label-map: '{item}' is not SOURCE=TARGET (integers, e.g. 5=1)") from None
        if dst not in LABELS.values():
            raise ConfigError(f"--label-map: target {dst} must be 0, 1 or 2")
        out[src] = dst
    return out


class _progress:
    """A rich progress line on stderr (terminals only, so errors stay one line in logs); the context value is
    a callback taking the finished case id."""

    def __init__(self, console, what: str):
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._p = None
        if console.is_terminal:
            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                               console=console, transient=True)
        self._what = what
        self._n = 0

    def __enter__(self):
        if self._p is not None:
            self._p.start()
            self._task = self._p.add_task(self._what)
        return self._step

    def _step(self, case: str) -> None:
        self._n += 1
        if self._p is not None:
            self._p.update(self._task, description=f"{self._what}: {self._n} done (last {case})")

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.stop()
