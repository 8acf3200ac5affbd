"""`predict`: one study (phases as NIfTI files, DICOM folders or arrays) -> label map, uncertainty, lesions.

Stages, each timed (`PredictionResult.timings`, seconds): `io` (read and check the phases and a given liver
mask), `liver` (the liver mask on the PV grid: a given mask resampled through the geometry, or the bundle's
liver model), `registration` (every other phase onto the PV grid, label-free), `preprocess` (window, liver
crop, resize: `data.prepare.prepare_case`, the same code as training), `network` (batched slices, bf16
autocast on GPU, optional flip TTA) and `postprocess` (paste back onto the PV grid, uncertainty, label map,
lesion table). `write_outputs` adds `writing`.
Each stage is a function (`read_study`, `liver_stage`, `register_and_prepare`, `network_stage`,
`finish_study`); `predict` runs them in turn, and the pipelined batch (`inference.pipeline`) runs the
same functions in other processes, so both give the same bytes.

Uncertainty (SPEC §3, every model alike): u = exp(1 - S_max / S_min) of the final two-class softmax, S_min
clamped at 1e-6 (as URIM's), computed from the tumour probability after it is mapped back onto the PV grid
and set to 0 outside the liver mask the network saw, so u, the saved probability and the label map
(p > 0.5) come from the same numbers. u = 1 where p = 0.5; u -> 0 where the model is sure, and u = 0 outside
the liver. Several bundles (`model=[A, B, ...]`) are a fold ensemble: the mean of their softmax
(`inference.ensemble`). The liver mask is checked (`data.liver_check`); `strict=True` refuses an implausible
one.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpliver.data.config import PreprocessConfig
from mpliver.data.liver_check import LiverCheck, check_liver
from mpliver.data.prepare import prepare_case
from mpliver.data.registration import FILL_HU, RigidTransform, register_phase
from mpliver.data.slices import SliceMapping
from mpliver.errors import RESEARCH_NOTICE, ConfigError, InputError
from mpliver.evaluation.lesion_report import lesion_table, notice_path, write_lesion_report
from mpliver.inference.bundle import Bundle
from mpliver.inference.case_report import (  # noqa: F401 (re-exported)
    NIFTI_NOTE,
    PROBABILITY_RULE,
    SYNTHETIC_NOTE,
    dicom_slice_refs,
    liver_check_report,
    nifti_note,
    registration_summary,
)
from mpliver.inference.ensemble import liver_bundle, load_ensemble
from mpliver.inference.slices import label_map, predict_slices
from mpliver.io.atomic import commit_set, make_staging
from mpliver.io.checks import check_hu, check_slices
from mpliver.io.dicom import DicomSeries
from mpliver.io.geometry import Geometry
from mpliver.io.layout import CaseVolumes
from mpliver.models.urim import uncertainty_from_probability
from mpliver.runtime import resolve_device

MIN_LIVER_COVERAGE = 0.5  # share of the PV liver a registered phase must cover
PhaseInput = str | Path | np.ndarray | tuple[np.ndarray, Geometry]
STAGES = ("io", "liver", "registration", "preprocess", "network", "postprocess")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PredictionResult:
    """One study on its PV grid: `label` uint8 (0/1/2), `uncertainty` and `probability` float32 (both 0
    outside the liver), the liver mask used and its check, the lesion table, the transforms of the
    registered phases and per-stage timings."""

    case_id: str
    label: np.ndarray
    uncertainty: np.ndarray
    probability: np.ndarray
    liver: np.ndarray
    lesions: list[dict[str, Any]]
    geometry: Geometry
    synthetic: bool
    timings: dict[str, float] = field(default_factory=dict)
    transforms: dict[str, RigidTransform] = field(default_factory=dict)
    pv_dicom: DicomSeries | None = None  # the scanned PV series, when PV came from DICOM (for DICOM-SEG)
    liver_check: LiverCheck | None = None
    liver_origin: str = ""
    models: list[str] = field(default_factory=list)  # the bundle(s) that made the prediction

    def report_meta(self) -> dict[str, Any]:
        """What the JSON lesion report gains beside the lesions: liver check, registration, the rule."""
        return {"liver_check": liver_check_report(self.liver_check, self.liver_origin),
                "registration": registration_summary(self.transforms, self.liver, self.geometry),
                "probability_rule": PROBABILITY_RULE, "models": list(self.models)}


def model_names(bundles: Sequence[Bundle]) -> list[str]:
    """How the reports name the bundles of a prediction: their absolute paths (the model name when a bundle
    was built in memory)."""
    return [str(Path(b.path).resolve()) if b.path is not None else b.model_config.name for b in bundles]


def read_volume(source: PhaseInput, what: str) -> tuple[np.ndarray, Geometry, DicomSeries | None]:
    """(float32 array, geometry, scanned DICOM series or None) of a NIfTI file, a DICOM source or an array.

    A bare array gets a 1 mm RAS-aligned grid; pass `(array, Geometry)` to keep a real one.
    """
    from mpliver.io.dicom import read_dicom_series, scan_series
    from mpliver.io.dicom_study import check_not_single_file, is_dicom_source
    from mpliver.io.nifti import read_nifti

    if isinstance(source, tuple):
        array, geom = source
        array = np.asarray(array, dtype=np.float32)
        if tuple(array.shape) != tuple(geom.shape):
            raise InputError(f"{what}: array shape {array.shape} does not match its geometry {geom.shape}")
        return array, geom, None
    if isinstance(source, np.ndarray):
        if source.ndim != 3:
            raise InputError(f"{what}: expected a 3-D array, got shape {source.shape}")
        geom = Geometry.from_spacing(source.shape, (1.0, 1.0, 1.0))
        return source.astype(np.float32, copy=False), geom, None
    path = Path(source)
    if is_dicom_source(path):  # a folder, a study .zip, or PATH::series=...,group=...
        series = scan_series(path)  # once: the pixels, the lesions' slice references and a SEG use it
        array, geom = read_dicom_series(series)
        return array, geom, series
    if not path.exists():
        raise InputError(f"{what} not found", path)
    check_not_single_file(path, what)
    array, geom = read_nifti(path, dtype=np.float32)
    return array, geom, None


def liver_mask_on_grid(source: PhaseInput, pv_geom: Geometry, values: tuple[int, ...] | None = None,
                       what: str = "liver mask") -> np.ndarray:
    """A user-supplied liver mask (any grid; `values` select the liver labels, None = non-zero) on the PV
    grid: placed exactly when its voxels are PV voxels (e.g. another axis order), else resampled (nearest)."""
    from mpliver.data.liver_mask import liver_mask_to_grid

    array, geom, _ = read_volume(source, what)
    mask = np.isin(np.rint(array), values) if values else array != 0
    return liver_mask_to_grid(mask, geom, pv_geom, source if isinstance(source, str | Path) else what)


class _GivenMask:
    """A liver-mask source that returns a mask computed beforehand (so its time counts as the liver stage)."""

    def __init__(self, mask: np.ndarray, origin: str):
        self.mask, self._origin = mask, origin

    def origin(self, case_id: str) -> str:
        return self._origin

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        return self.mask


def check_precision(precision: str) -> str:
    """`precision` of the network stage if known ('auto': bf16 autocast on GPU, fp32 on the CPU; 'fp32';
    'bf16': bf16 autocast on any device), else a one-line ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return precision


@torch.no_grad()
def _network(model: torch.nn.Module, stacks: np.ndarray, batch_size: int, device: torch.device,
             tta: bool, precision: str = "auto") -> np.ndarray:
    """(S, n, n) tumour probability; with `tta` the mean over the identity and the H, W and HW flips."""
    # predict_slices decides per device: bf16 autocast on a GPU unless fp32, on the CPU only when asked for
    amp, amp_cpu = precision != "fp32", precision == "bf16"
    flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if tta else [])
    total = None
    for dims in flips:
        x = np.flip(stacks, axis=dims) if dims else stacks
        p = predict_slices(model, np.ascontiguousarray(x), batch_size, device, amp, channels_last=True,
                           amp_cpu=amp_cpu).probability
        p = np.flip(p, axis=dims) if dims else p
        total = p if total is None else total + p
    return (total / len(flips)).astype(np.float32)


# ---- the stages of `predict`, shared by the sequential and the pipelined batch (`predict_pipeline`) ------


@dataclass(frozen=True)
class PredictSettings:
    """What the CPU stages need from the bundle(s) and the options: plain data without weights, so that a
    preparation process of the batch pipeline receives it cheaply."""

    phases: tuple[str, ...]
    preprocess: PreprocessConfig
    registration: str
    strict: bool = False
    bundle_path: Path | None = None


def predict_settings(bundles: Sequence[Bundle], registration: str | None = None,
                     strict: bool = False) -> PredictSettings:
    """The settings of a prediction with `bundles` (checked by `load_ensemble`); a ConfigError for an
    unknown registration method."""
    bundle = bundles[0]
    method = registration or bundle.preprocess.registration
    if method not in ("liver", "none"):
        raise ConfigError(f"registration at inference must be 'liver' or 'none', got '{method}'")
    return PredictSettings(tuple(bundle.phases), bundle.preprocess, method, strict, bundle.path)


class StageClock:
    """Per-stage wall times: `mark(name)` ends the running stage (if any) and starts `name`, calling
    `on_stage(name)`; `stop()` ends the running stage. Times of a stage marked twice add up."""

    def __init__(self, on_stage: Callable[[str], None] | None = None,
                 timings: Mapping[str, float] | None = None):
        self.on_stage = on_stage
        self.timings: dict[str, float] = dict(timings or {})
        self._running: tuple[str, float] | None = None

    def mark(self, name: str) -> None:
        self.stop()
        self._running = (name, time.perf_counter())
        if self.on_stage is not None:
            self.on_stage(name)

    def stop(self) -> None:
        if self._running is not None:
            name, start = self._running
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            self._running = None


@dataclass
class StudyVolumes:
    """The phases of one study as read and checked (the `io` stage), in the model's phase order."""

    case_id: str
    volumes: dict[str, np.ndarray]
    geometries: dict[str, Geometry]
    sources: dict[str, Path | None]
    pv_dicom: DicomSeries | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class PreparedStudy:
    """A study ready for the network (`stacks`, (S, P, C, n, n) float32) with what the postprocess needs:
    the slice mapping back onto the PV grid, the liver mask and its check, and the registration."""

    case_id: str
    stacks: np.ndarray | None
    mapping: SliceMapping
    liver: np.ndarray
    geometry: Geometry
    axial_axis: int | None
    transforms: dict[str, RigidTransform]
    liver_check: LiverCheck
    liver_origin: str
    pv_dicom: DicomSeries | None = None
    timings: dict[str, float] = field(default_factory=dict)


def read_study(settings: PredictSettings, phases: Mapping[str, PhaseInput], case_id: str,
               clock: StageClock | None = None) -> StudyVolumes:
    """The `io` stage: check the phase names against the model's, read every phase and check its HU
    values and slices."""
    clock = clock or StageClock()
    clock.mark("io")
    given, expected = list(phases), list(settings.phases)
    missing = [p for p in expected if p not in given]
    if missing:
        raise InputError(f"case {case_id}: missing phase {missing[0]} (the model takes "
                         f"{', '.join(expected)})")
    extra = [p for p in given if p not in expected]
    if extra:
        raise InputError(f"case {case_id}: phase {extra[0]} is not one of the model's phases "
                         f"({', '.join(expected)}); the bundle was trained on {len(expected)} phase(s)")
    study = StudyVolumes(case_id, {}, {}, {})
    for name in expected:
        src = phases[name]
        array, geom, dicom = read_volume(src, f"{name} phase")
        origin = src if isinstance(src, str | Path) else None
        try:
            check_hu(array, origin)
            check_slices(geom, origin, "the volume")
        except InputError as exc:
            raise InputError(f"{name} phase: {exc}") from None
        study.volumes[name], study.geometries[name] = array, geom
        study.sources[name] = Path(src) if isinstance(src, str | Path) else None
        if name == expected[0]:  # the primary phase (PV by default)
            study.pv_dicom = dicom
    clock.stop()
    study.timings = dict(clock.timings)
    return study


def liver_stage(settings: PredictSettings, study: StudyVolumes, *, liver_mask: PhaseInput | None = None,
                liver_mask_values: tuple[int, ...] | None = None, bundles: Sequence[Bundle] = (),
                device: torch.device | None = None, batch_size: int = 16,
                clock: StageClock | None = None) -> tuple[np.ndarray, str, LiverCheck]:
    """The `liver` stage: (mask on the PV grid, where it came from, its check). A given `liver_mask` is
    placed or resampled onto the PV grid; without one, the liver model of `bundles` runs on `device`.
    `settings.strict` turns an implausible mask into an InputError."""
    clock = clock or StageClock()
    clock.mark("liver")
    primary = settings.phases[0]  # PV by default
    pv, pv_geom = study.volumes[primary], study.geometries[primary]
    axial_axis = settings.preprocess.axial_axis
    with_liver = liver_bundle(bundles) if bundles else None
    if liver_mask is not None:
        liver = liver_mask_on_grid(liver_mask, pv_geom, liver_mask_values)
        liver_origin = str(liver_mask) if isinstance(liver_mask, str | Path) else "the given liver mask"
    elif with_liver is not None:
        from mpliver.data.liver_mask import FromModel

        dev = device or torch.device("cpu")
        stage1 = with_liver.liver
        liver_net = with_liver.inference_model("liver", dev)  # BN folded, channels_last; kept on the bundle
        source = FromModel(liver_net, stage1.input_size, stage1.window, stage1.context_slices, axial_axis,
                           batch_size, dev, name="the bundle's liver model")
        liver = source(CaseVolumes(study.case_id, {primary: pv}, {primary: pv_geom}))
        liver_origin = source.origin(study.case_id)
    else:
        raise InputError(f"case {study.case_id}: the bundle has no liver model; give a liver mask "
                         "(--liver-mask)", settings.bundle_path)
    liver_check = check_liver(liver, pv, pv_geom, axial_axis)
    if settings.strict and not liver_check.ok:
        raise InputError(f"{liver_check.message(study.case_id, liver_origin)} (refused: --strict)",
                         study.sources[primary])
    return liver, liver_origin, liver_check


def register_and_prepare(settings: PredictSettings, study: StudyVolumes, liver: np.ndarray, liver_origin: str,
                         liver_check: LiverCheck, clock: StageClock | None = None) -> PreparedStudy:
    """The `registration` stage (every other phase onto the PV grid, label-free, with a coverage check)
    and the `preprocess` stage (window, liver crop, resize: `data.prepare.prepare_case`, as in training)."""
    clock = clock or StageClock()
    clock.mark("registration")
    case_id, expected, sources = study.case_id, list(settings.phases), study.sources
    pv, pv_geom = study.volumes[expected[0]], study.geometries[expected[0]]  # the primary phase
    on_pv: dict[str, np.ndarray] = {expected[0]: pv}
    transforms: dict[str, RigidTransform] = {}
    for name in expected[1:]:
        volume, geom = study.volumes[name], study.geometries[name]
        if settings.registration == "none" and geom.same_grid(pv_geom):
            on_pv[name], transforms[name] = volume, RigidTransform()
            continue
        on_pv[name], transforms[name] = register_phase(
            settings.registration, pv, pv_geom, volume, geom, liver_mask=liver, moving_path=sources[name],
            fixed_path=sources[expected[0]])
        coverage = float(np.mean(on_pv[name][liver] > FILL_HU + 0.5))
        if coverage < MIN_LIVER_COVERAGE:
            raise InputError(f"case {case_id}: the {name} phase covers only {coverage:.0%} of the PV liver "
                             "after registration: phases of different patients or studies, or a wrong file",
                             sources[name])

    clock.mark("preprocess")
    config = replace(settings.preprocess, registration="none", liver_mask_source="label",
                     liver_mask_pattern=None)
    case = CaseVolumes(case_id, on_pv, {name: pv_geom for name in on_pv})
    prepared = prepare_case(case, config, mask_source=_GivenMask(liver, liver_origin),
                            paths={k: v for k, v in sources.items() if v is not None})
    stacks = prepared.stacks()
    clock.stop()
    return PreparedStudy(case_id, stacks, prepared.mapping, liver, pv_geom, settings.preprocess.axial_axis,
                         transforms, liver_check, liver_origin, study.pv_dicom, dict(clock.timings))


def prepare_study(settings: PredictSettings, phases: Mapping[str, PhaseInput], case_id: str, *,
                  liver_mask: PhaseInput | None = None, liver_mask_values: tuple[int, ...] | None = None,
                  bundles: Sequence[Bundle] = (), device: torch.device | None = None, batch_size: int = 16,
                  clock: StageClock | None = None) -> PreparedStudy:
    """Every stage before the network: `io`, `liver`, `registration` and `preprocess`."""
    clock = clock or StageClock()
    study = read_study(settings, phases, case_id, clock)
    liver, origin, check = liver_stage(settings, study, liver_mask=liver_mask,
                                       liver_mask_values=liver_mask_values, bundles=bundles, device=device,
                                       batch_size=batch_size, clock=clock)
    return register_and_prepare(settings, study, liver, origin, check, clock)


def network_stage(bundles: Sequence[Bundle], stacks: np.ndarray, batch_size: int, device: torch.device,
                  tta: bool, precision: str = "auto") -> np.ndarray:
    """The `network` stage: (S, n, n) tumour probability of the stacks; for several bundles (a fold
    ensemble) the mean of the members' softmax. `precision`: see `check_precision`."""
    nets = [b.inference_model("tumor", device) for b in bundles]
    prob_slices = _network(nets[0], stacks, batch_size, device, tta, precision)
    for net in nets[1:]:
        prob_slices += _network(net, stacks, batch_size, device, tta, precision)
    if len(bundles) > 1:
        prob_slices /= np.float32(len(bundles))
    return prob_slices


def finish_study(study: PreparedStudy, prob_slices: np.ndarray, synthetic: bool, models: list[str],
                 clock: StageClock | None = None) -> PredictionResult:
    """The `postprocess` stage: paste the probability back onto the PV grid, then the uncertainty, the label
    map and the lesion table."""
    clock = clock or StageClock(timings=study.timings)
    clock.mark("postprocess")
    liver = study.liver
    probability = study.mapping.paste_back(prob_slices, mode="linear", fill=0.0).astype(np.float32)
    probability[~liver] = 0.0  # the network saw only the liver (its input is masked): nothing outside counts
    uncertainty = uncertainty_from_probability(probability)
    label = label_map(probability > 0.5, liver)
    refs = dicom_slice_refs(study.pv_dicom) if study.pv_dicom is not None else None
    lesions = lesion_table(label, uncertainty, study.geometry, axial_axis=study.axial_axis,
                           dicom_slices=refs)
    clock.stop()
    return PredictionResult(study.case_id, label, uncertainty, probability, liver, lesions, study.geometry,
                            synthetic, dict(clock.timings), study.transforms, study.pv_dicom,
                            study.liver_check, study.liver_origin, models)


def predict(
    model: Bundle | str | Path | Sequence[Bundle | str | Path],
    phases: Mapping[str, PhaseInput],
    *,
    liver_mask: PhaseInput | None = None,
    liver_mask_values: tuple[int, ...] | None = None,
    case_id: str = "case",
    device: str | torch.device = "auto",
    tta: bool = False,
    batch_size: int = 16,
    registration: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    strict: bool = False,
    precision: str = "auto",
) -> PredictionResult:
    """Segment one study with a bundle, or a fold ensemble of several. `phases` maps phase names (the
    bundle's, e.g. PV and ART) to NIfTI paths, DICOM folders, `(array, Geometry)` pairs or arrays.
    `liver_mask` (any grid) replaces the bundle's liver model; `registration` ('liver' or 'none') overrides
    the bundle's; `strict` turns an implausible liver mask into an InputError; `precision` of the network:
    'auto' (bf16 autocast on GPU, fp32 on the CPU), 'fp32' or 'bf16'. Returns a `PredictionResult` on the PV
    grid."""
    check_precision(precision)
    bundles = load_ensemble(model)
    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    settings = predict_settings(bundles, registration, strict)
    clock = StageClock(on_stage)
    study = prepare_study(settings, phases, case_id, liver_mask=liver_mask,
                          liver_mask_values=liver_mask_values, bundles=bundles, device=dev,
                          batch_size=batch_size, clock=clock)
    clock.mark("network")
    prob_slices = network_stage(bundles, study.stacks, batch_size, dev, tta, precision)
    return finish_study(study, prob_slices, any(b.synthetic for b in bundles), model_names(bundles), clock)


# ---- outputs ------------------------------------------------------------------------------------------


def output_paths(out_dir: str | Path, case_id: str, dicom_seg: bool = False,
                 probabilities: bool = False) -> dict[str, Path]:
    """The files `write_outputs` writes for a case (the probability map and DICOM-SEG only when asked for)."""
    out = Path(out_dir)
    paths = {"label": out / f"{case_id}.nii.gz", "uncertainty": out / f"{case_id}_uncertainty.nii.gz",
             "lesions_csv": out / f"{case_id}_lesions.csv", "lesions_json": out / f"{case_id}_lesions.json"}
    paths["lesions_notice"] = notice_path(paths["lesions_csv"])
    if probabilities:
        paths["probability"] = out / f"{case_id}_probability.nii.gz"
    if dicom_seg:
        paths["dicom_seg"] = out / f"{case_id}_seg.dcm"
    return paths


def write_outputs(result: PredictionResult, out_dir: str | Path, dicom_seg: bool = False,
                  meta: dict[str, Any] | None = None, probabilities: bool = False) -> dict[str, Path]:
    """Write the label map, uncertainty map and lesion report (and the tumour probability with
    `probabilities`, a DICOM-SEG when PV was DICOM and `dicom_seg`) as one set: all into a staging folder
    beside them, then moved into place together, so a failure (full disk, read-only) leaves the earlier set
    or nothing. Adds `writing` to `result.timings`. Returns the paths written."""
    from mpliver.io.dicom_seg import write_dicom_seg
    from mpliver.io.nifti import write_nifti

    start = time.perf_counter()
    if dicom_seg and result.pv_dicom is None:
        raise InputError(f"case {result.case_id}: --dicom-seg needs the PV phase as a DICOM series folder")
    out = Path(out_dir)
    paths = output_paths(out, result.case_id, dicom_seg, probabilities)
    stage = make_staging(out / result.case_id)
    staged = output_paths(stage, result.case_id, dicom_seg, probabilities)
    note = nifti_note(result.synthetic, result.liver_check)
    try:
        write_nifti(staged["uncertainty"], result.uncertainty.astype(np.float32), result.geometry, note)
        if probabilities:
            write_nifti(staged["probability"], result.probability.astype(np.float32), result.geometry, note)
        write_lesion_report(staged["lesions_csv"], staged["lesions_json"], result.lesions, result.case_id,
                            result.synthetic, {"spacing_mm": result.geometry.spacing.tolist(),
                                               **result.report_meta(), **(meta or {})},
                            liver_volume_ml=None if result.liver_check is None
                            else result.liver_check.volume_ml)
        write_nifti(staged["label"], result.label.astype(np.uint8), result.geometry, note)
        if dicom_seg:
            write_dicom_seg(staged["dicom_seg"], result.label, result.pv_dicom, algorithm="mpliver",
                            series_description=RESEARCH_NOTICE)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    # the label map last: with the others, it marks a finished case for the batch mode's skip
    commit_set(stage, out, [p.name for key, p in paths.items() if key != "label"] + [paths["label"].name])
    result.timings["writing"] = time.perf_counter() - start
    return paths
