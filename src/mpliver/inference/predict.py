"""The predictor: one study (phases as NIfTI files, DICOM folders or arrays) -> label map, uncertainty,
lesions. `Predictor.from_bundle(...)` loads a bundle (or a fold ensemble) once; its `predict` segments a study
and can be called for every case of a batch. `predict(...)` is the one-call form.

Stages, each a method of `Predictor` and each timed (`PredictionResult.timings`, seconds): `read_study`
(`io`: read and check the phases), `liver_mask` (`liver`: the liver mask on the PV grid, a given mask
resampled through the geometry or the bundle's liver model), `register` (`registration`: every other phase
onto the PV grid, label-free), `prepare` (`preprocess`: window, liver crop, resize with
`data.prepare.prepare_case`, the same code as training), `infer` (`network`: batched slices, bf16 autocast on
GPU, optional flip TTA) and `finish_study` (`postprocess`: paste back onto the PV grid, uncertainty, label
map, lesion table). `write_outputs` adds `writing`. The pipelined batch (`inference.pipeline`) runs the same
methods in other processes, so both give the same bytes.

Uncertainty (docs/method.md §3, every model alike): u = exp(1 - S_max / S_min) of the final two-class
softmax, S_min clamped at 1e-6 (as URIM's), computed from the tumour probability after it is mapped back onto
the PV grid and set to 0 outside the liver mask the network saw, so u, the saved probability and the label map
(p > 0.5) come from the same numbers. u = 1 where p = 0.5; u -> 0 where the model is sure, and u = 0 outside
the liver. Several bundles (`model=[A, B, ...]`) are a fold ensemble: the mean of their softmax
(`inference.ensemble`). The liver mask is checked (`data.liver_check`); `strict=True` refuses an implausible
one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpliver.data.liver_check import check_liver
from mpliver.data.liver_mask import FromModel
from mpliver.data.prepare import prepare_case
from mpliver.data.registration import FILL_HU, RigidTransform, register_phase
from mpliver.errors import ConfigError, InputError
from mpliver.evaluation.lesion_report import lesion_table
from mpliver.inference.bundle import Bundle
from mpliver.inference.case_report import dicom_slice_refs
from mpliver.inference.clock import STAGES, StageClock  # noqa: F401 (STAGES re-exported)
from mpliver.inference.ensemble import liver_bundle, load_ensemble, model_names
from mpliver.inference.outputs import PredictionResult, output_paths, write_outputs  # noqa: F401 (re-exported)
from mpliver.inference.postprocess import Postprocess, tumor_mask
from mpliver.inference.settings import (  # noqa: F401 (re-exported)
    PRECISIONS,
    PredictSettings,
    check_precision,
    predict_settings,
)
from mpliver.inference.slices import label_map, predict_slices
from mpliver.inference.study import (  # noqa: F401 (re-exported)
    PhaseInput,
    PreparedStudy,
    StudyLiver,
    StudyVolumes,
    liver_mask_on_grid,
    read_study,
    read_volume,
)
from mpliver.io.layout import CaseVolumes
from mpliver.models.urim import uncertainty_from_probability  # noqa: F401 (re-exported)
from mpliver.runtime import resolve_device

MIN_LIVER_COVERAGE = 0.5  # share of the PV liver a registered phase must cover


class _GivenMask:
    """A liver-mask source that returns a mask computed beforehand (so its time counts as the liver stage)."""

    def __init__(self, mask: np.ndarray, origin: str):
        self.mask, self._origin = mask, origin

    def origin(self, case_id: str) -> str:
        return self._origin

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        return self.mask


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


class Predictor:
    """A bundle, or a fold ensemble of several, ready to segment studies: built once (`from_bundle`) and
    reused for every case of a batch, as nnU-Net's predictor. One method per stage (module notes); `predict`
    runs them all. Built from `settings` alone (no bundles) it runs the CPU stages only: reading, a given
    liver mask, registration, pre-processing and the postprocess, as a preparation process of the pipelined
    batch does."""

    def __init__(self, settings: PredictSettings, bundles: Sequence[Bundle] = (),
                 device: torch.device | None = None, *, tta: bool = False, batch_size: int = 16,
                 precision: str = "auto"):
        self.settings = settings
        self.bundles = list(bundles)
        self.device = device if device is not None else torch.device("cpu")
        self.tta, self.batch_size, self.precision = tta, batch_size, check_precision(precision)
        self.synthetic = any(b.synthetic for b in self.bundles)
        self.models = model_names(self.bundles)

    @classmethod
    def from_bundle(cls, model: Bundle | str | Path | Sequence[Bundle | str | Path], *,
                    device: str | torch.device = "auto", tta: bool = False, batch_size: int = 16,
                    registration: str | None = None, strict: bool = False,
                    precision: str = "auto", postprocess: Postprocess | None = None) -> Predictor:
        """Load and check the bundle(s) (several: a fold ensemble) and resolve the device. `registration`
        ('liver' or 'none') overrides the bundle's; `strict` refuses an implausible liver mask;
        `precision`: 'auto' (bf16 autocast on GPU, fp32 on the CPU), 'fp32' or 'bf16'; `postprocess`: how
        the probability becomes the tumour mask (default: the paper's p > 0.5)."""
        check_precision(precision)
        bundles = load_ensemble(model)
        dev = device if isinstance(device, torch.device) else resolve_device(str(device))
        return cls(predict_settings(bundles, registration, strict, postprocess), bundles, dev, tta=tta,
                   batch_size=batch_size, precision=precision)

    def _need_bundles(self, what: str) -> None:
        if not self.bundles:
            raise ConfigError(f"{what} needs a model: build the Predictor with `Predictor.from_bundle`")

    # ---- the stages --------------------------------------------------------------------------------------

    def read_study(self, phases: Mapping[str, PhaseInput], case_id: str = "case",
                   clock: StageClock | None = None) -> StudyVolumes:
        """The `io` stage: the phases (the bundle's names -> sources) read and checked."""
        return read_study(self.settings.phases, phases, case_id, clock)

    def liver_mask(self, study: StudyVolumes, liver_mask: PhaseInput | None = None,
                   liver_mask_values: tuple[int, ...] | None = None,
                   clock: StageClock | None = None) -> StudyLiver:
        """The `liver` stage: a given `liver_mask` (any grid; `liver_mask_values` select its liver labels)
        placed or resampled onto the PV grid, else the bundle's liver model's; then checked (an InputError
        for an implausible one when strict). Adds its time to `study.timings`."""
        settings = self.settings
        clock = clock or StageClock(timings=study.timings)
        clock.mark("liver")
        primary = settings.phases[0]  # PV by default
        pv, pv_geom = study.volumes[primary], study.geometries[primary]
        axial_axis = settings.preprocess.axial_axis
        with_liver = liver_bundle(self.bundles) if self.bundles else None
        if liver_mask is not None:
            liver = liver_mask_on_grid(liver_mask, pv_geom, liver_mask_values)
            origin = str(liver_mask) if isinstance(liver_mask, str | Path) else "the given liver mask"
        elif with_liver is not None:
            stage1 = with_liver.liver
            liver_net = with_liver.inference_model("liver", self.device)  # BN folded, kept on the bundle
            source = FromModel(liver_net, stage1.input_size, stage1.window, stage1.context_slices, axial_axis,
                               self.batch_size, self.device, name="the bundle's liver model")
            liver = source(CaseVolumes(study.case_id, {primary: pv}, {primary: pv_geom}))
            origin = source.origin(study.case_id)
        else:
            raise InputError(f"case {study.case_id}: the bundle has no liver model; give a liver mask "
                             "(--liver-mask)", settings.bundle_path)
        check = check_liver(liver, pv, pv_geom, axial_axis)
        if settings.strict and not check.ok:
            raise InputError(f"{check.message(study.case_id, origin)} (refused: --strict)",
                             study.sources[primary])
        clock.stop()
        study.timings = dict(clock.timings)
        return StudyLiver(liver, origin, check)

    def register(self, study: StudyVolumes, liver: StudyLiver,
                 clock: StageClock | None = None) -> StudyVolumes:
        """The `registration` stage: every other phase onto the PV grid (label-free, around the liver), with
        a check that it covers the PV liver. Returns the study on the PV grid with the transforms."""
        clock = clock or StageClock(timings=study.timings)
        clock.mark("registration")
        case_id, expected, sources = study.case_id, list(self.settings.phases), study.sources
        pv, pv_geom = study.volumes[expected[0]], study.geometries[expected[0]]  # the primary phase
        on_pv: dict[str, np.ndarray] = {expected[0]: pv}
        transforms: dict[str, RigidTransform] = {}
        for name in expected[1:]:
            volume, geom = study.volumes[name], study.geometries[name]
            if self.settings.registration == "none" and geom.same_grid(pv_geom):
                on_pv[name], transforms[name] = volume, RigidTransform()
                continue
            on_pv[name], transforms[name] = register_phase(
                self.settings.registration, pv, pv_geom, volume, geom, liver_mask=liver.mask,
                moving_path=sources[name], fixed_path=sources[expected[0]])
            coverage = float(np.mean(on_pv[name][liver.mask] > FILL_HU + 0.5))
            if coverage < MIN_LIVER_COVERAGE:
                raise InputError(f"case {case_id}: the {name} phase covers only {coverage:.0%} of the PV "
                                 "liver after registration: phases of different patients or studies, or a "
                                 "wrong file", sources[name])
        clock.stop()
        return replace(study, volumes=on_pv, geometries={name: pv_geom for name in on_pv},
                       transforms=transforms, timings=dict(clock.timings))

    def prepare(self, study: StudyVolumes, liver: StudyLiver,
                clock: StageClock | None = None) -> PreparedStudy:
        """The `preprocess` stage of a registered study: window, liver crop, resize
        (`data.prepare.prepare_case`, as in training) into the network's stacks."""
        clock = clock or StageClock(timings=study.timings)
        clock.mark("preprocess")
        config = replace(self.settings.preprocess, registration="none", liver_mask_source="label",
                         liver_mask_pattern=None)
        case = CaseVolumes(study.case_id, study.volumes, study.geometries)
        prepared = prepare_case(case, config, mask_source=_GivenMask(liver.mask, liver.origin),
                                paths={k: v for k, v in study.sources.items() if v is not None})
        stacks = prepared.stacks()
        clock.stop()
        pv_geom = study.geometries[self.settings.phases[0]]
        return PreparedStudy(study.case_id, stacks, prepared.mapping, liver.mask, pv_geom,
                             self.settings.preprocess.axial_axis, study.transforms, liver.check, liver.origin,
                             study.pv_dicom, dict(clock.timings))

    def prepare_study(self, phases: Mapping[str, PhaseInput], case_id: str = "case", *,
                      liver_mask: PhaseInput | None = None, liver_mask_values: tuple[int, ...] | None = None,
                      clock: StageClock | None = None) -> PreparedStudy:
        """Every stage before the network: `io`, `liver`, `registration` and `preprocess`."""
        clock = clock or StageClock()
        study = self.read_study(phases, case_id, clock)
        liver = self.liver_mask(study, liver_mask, liver_mask_values, clock)
        return self.prepare(self.register(study, liver, clock), liver, clock)

    def infer(self, study: PreparedStudy, clock: StageClock | None = None) -> np.ndarray:
        """The `network` stage: (S, n, n) tumour probability of the study's stacks; for a fold ensemble the
        mean of the members' softmax. Adds its time to `study.timings`."""
        self._need_bundles("the network stage")
        clock = clock or StageClock(timings=study.timings)
        clock.mark("network")
        nets = [b.inference_model("tumor", self.device) for b in self.bundles]
        args = (study.stacks, self.batch_size, self.device, self.tta, self.precision)
        prob_slices = _network(nets[0], *args)
        for net in nets[1:]:
            prob_slices += _network(net, *args)
        if len(nets) > 1:
            prob_slices /= np.float32(len(nets))
        clock.stop()
        study.timings = dict(clock.timings)
        return prob_slices

    def finish_study(self, study: PreparedStudy, prob_slices: np.ndarray,
                     clock: StageClock | None = None) -> PredictionResult:
        """The `postprocess` stage: paste the probability back onto the PV grid, then the uncertainty, the
        label map and the lesion table."""
        clock = clock or StageClock(timings=study.timings)
        clock.mark("postprocess")
        liver = study.liver
        probability = study.mapping.paste_back(prob_slices, mode="linear", fill=0.0).astype(np.float32)
        probability[~liver] = 0.0  # the network saw only the liver (its input is masked): nothing outside
        uncertainty = uncertainty_from_probability(probability)
        label = label_map(tumor_mask(probability, liver, study.geometry.spacing, self.settings.postprocess),
                          liver)
        refs = dicom_slice_refs(study.pv_dicom) if study.pv_dicom is not None else None
        lesions = lesion_table(label, uncertainty, study.geometry, axial_axis=study.axial_axis,
                               dicom_slices=refs)
        clock.stop()
        return PredictionResult(study.case_id, label, uncertainty, probability, liver, lesions,
                                study.geometry, self.synthetic, dict(clock.timings), study.transforms,
                                study.pv_dicom, study.liver_check, study.liver_origin, list(self.models),
                                self.settings.postprocess.describe())

    def write_outputs(self, result: PredictionResult, out_dir: str | Path, *, dicom_seg: bool = False,
                      probabilities: bool = False, meta: dict[str, Any] | None = None) -> dict[str, Path]:
        """The `writing` stage (`outputs.write_outputs`), the report naming the bundle's model."""
        self._need_bundles("writing the outputs")
        return write_outputs(result, out_dir, dicom_seg=dicom_seg, probabilities=probabilities,
                             meta={"model": self.bundles[0].model_config.name, **(meta or {})})

    def predict(self, phases: Mapping[str, PhaseInput], *, liver_mask: PhaseInput | None = None,
                liver_mask_values: tuple[int, ...] | None = None, case_id: str = "case",
                on_stage: Callable[[str], None] | None = None) -> PredictionResult:
        """Segment one study: every stage in turn, `on_stage(name)` called as each begins. `phases` maps the
        bundle's phase names to NIfTI paths, DICOM folders, `(array, Geometry)` pairs or arrays;
        `liver_mask` (any grid) replaces the bundle's liver model."""
        clock = StageClock(on_stage)
        study = self.prepare_study(phases, case_id, liver_mask=liver_mask,
                                   liver_mask_values=liver_mask_values, clock=clock)
        prob_slices = self.infer(study, clock)
        return self.finish_study(study, prob_slices, clock)


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
    postprocess: Postprocess | None = None,
) -> PredictionResult:
    """Segment one study with a bundle, or a fold ensemble of several: `Predictor.from_bundle(...)` then its
    `predict` (see both). For many studies build the `Predictor` once instead. Returns a
    `PredictionResult` on the PV grid."""
    predictor = Predictor.from_bundle(model, device=device, tta=tta, batch_size=batch_size,
                                      registration=registration, strict=strict, precision=precision,
                                      postprocess=postprocess)
    return predictor.predict(phases, liver_mask=liver_mask, liver_mask_values=liver_mask_values,
                             case_id=case_id, on_stage=on_stage)
