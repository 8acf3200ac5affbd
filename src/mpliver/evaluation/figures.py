"""Report figures as PNG (matplotlib's Agg canvas, no display needed): Fig.-3-style overlays with the
reference contour in red and the prediction in blue, URIM confidence maps, training curves and per-type
DPC bars.

Slices are shown the radiological way: anterior at the top, the patient's right on the viewer's left. The
slice arrays used here follow `mpliver.data.orientation` ((H, W) with H growing towards R and W towards A,
also the frame of the network's input), and `display` turns such a slice into the displayed image.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.data.orientation import slice_orientation
from mpliver.io.atomic import atomic_path
from mpliver.io.checks import check_hu, check_same_grid
from mpliver.io.labels import TUMOR
from mpliver.io.nifti import read_nifti

REFERENCE_COLOR = "red"
PREDICTION_COLOR = "blue"
HU_WINDOW = (-70.0, 180.0)


def display(slice_hw: np.ndarray) -> np.ndarray:
    """(H→R, W→A) slice -> displayed image: rows from anterior (top) to posterior, columns from R to L."""
    return np.ascontiguousarray(np.asarray(slice_hw)[::-1, ::-1].T)


def _figure(width: float, height: float):
    # lazy: matplotlib is slow to import and only the figure commands need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def _contours(ax, reference: np.ndarray | None, prediction: np.ndarray | None) -> None:
    from matplotlib.lines import Line2D  # lazy: matplotlib import cost, figure commands only

    handles = []
    for mask, color, name in ((reference, REFERENCE_COLOR, "reference"),
                              (prediction, PREDICTION_COLOR, "prediction")):
        if mask is None:
            continue
        mask = np.asarray(mask, dtype=float)
        if mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors=color, linewidths=1.2)
        handles.append(Line2D([0], [0], color=color, lw=1.5, label=name))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.6)


def overlay_png(path: str | Path, image: np.ndarray, reference: np.ndarray | None,
                prediction: np.ndarray | None, title: str = "", vmin: float = HU_WINDOW[0],
                vmax: float = HU_WINDOW[1], aspect: float = 1.0) -> Path:
    """A displayed slice in grey, the reference contour in red and the prediction contour in blue (Fig. 3).

    All arrays are already in display order (see `display`); `aspect` is row spacing / column spacing.
    """
    image = np.asarray(image, dtype=np.float32)
    for name, mask in (("reference", reference), ("prediction", prediction)):
        if mask is not None and np.shape(mask) != image.shape:
            raise ValueError(f"{name} shape {np.shape(mask)} differs from the image {image.shape}")
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
    _contours(ax, reference, prediction)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return _save(fig, path)


def tumor_slice_index(reference: np.ndarray, prediction: np.ndarray | None = None) -> int:
    """Index along axis 0 of the slice with the most reference tumour (else predicted; else the middle)."""
    for masks in (reference, prediction):
        if masks is None:
            continue
        area = np.asarray(masks).reshape(len(masks), -1).sum(axis=1)
        if area.max(initial=0) > 0:
            return int(np.argmax(area))
    return len(reference) // 2


def case_overlay_png(path: str | Path, image_path: str | Path, label_path: str | Path,
                     prediction_path: str | Path, title: str = "", tumor_label: int = TUMOR) -> Path:
    """Overlay of one case on its axial PV slice with the most reference tumour (NIfTI files in, PNG out)."""
    image, geometry = read_nifti(image_path, dtype=np.float32)
    check_hu(image, image_path)
    label, label_geometry = read_nifti(label_path)
    pred, pred_geometry = read_nifti(prediction_path)
    check_same_grid(geometry, label_geometry, label_path, what="label")
    check_same_grid(geometry, pred_geometry, prediction_path, what="prediction")
    orient = slice_orientation(geometry)
    ref_s = orient.to_slices(label == tumor_label)
    pred_s = orient.to_slices(pred == tumor_label)
    k = tumor_slice_index(ref_s, pred_s)
    row_mm, col_mm = orient.plane_spacing(geometry)[::-1]  # displayed rows run along W, columns along H
    text = f"{title} (axial slice {k})" if title else f"axial slice {k}"  # K runs in array order
    return overlay_png(path, display(orient.to_slices(image)[k]), display(ref_s[k]), display(pred_s[k]),
                       title=text, aspect=row_mm / col_mm)


def confidence_png(path: str | Path, image: np.ndarray, confidence: np.ndarray,
                   reference: np.ndarray | None = None, prediction: np.ndarray | None = None,
                   title: str = "") -> Path:
    """Two panels: the input slice with both contours, and URIM's confidence map M (0 = uncertain, 1 = sure).

    Arrays are in the network's (H→R, W→A) frame; `confidence` may be coarser (the decoder's stride 4) and
    is stretched over the same extent.
    """
    image = np.asarray(image, dtype=np.float32)
    conf = np.asarray(confidence, dtype=np.float32)
    if conf.ndim != 2 or image.ndim != 2:
        raise ValueError(f"image and confidence must be 2-D, got {image.shape} and {conf.shape}")
    fig = _figure(8.5, 4.2)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    extent = (0, image.shape[0], image.shape[1], 0)  # displayed: rows = W, columns = H
    ax1.imshow(display(image), cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    ax1.set_xlim(0, image.shape[0])
    ax1.set_ylim(image.shape[1], 0)
    shown = [None if m is None else display(np.asarray(m, dtype=float)) for m in (reference, prediction)]
    if any(m is not None for m in shown):
        from matplotlib.lines import Line2D  # lazy: matplotlib import cost, figure commands only

        handles = []
        for m, color, name in zip(shown, (REFERENCE_COLOR, PREDICTION_COLOR), ("reference", "prediction"),
                                  strict=True):
            if m is None:
                continue
            if m.any() and not m.all():
                ax1.contour(np.arange(m.shape[1]) + 0.5, np.arange(m.shape[0]) + 0.5, m, levels=[0.5],
                            colors=color, linewidths=1.2)
            handles.append(Line2D([0], [0], color=color, lw=1.5, label=name))
        ax1.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.6)
    ax1.set_title("input (PV, windowed)", fontsize=9)
    ax1.set_axis_off()
    im = ax2.imshow(display(conf), cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    ax2.set_title("URIM confidence M", fontsize=9)
    ax2.set_axis_off()
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def read_log_csv(path: str | Path) -> list[dict[str, float]]:
    """A training run's log.csv as a list of rows of floats (empty cells as nan)."""
    rows = []
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()})
    return rows


def training_curves_png(path: str | Path, logs: Mapping[str, Sequence[Mapping[str, float]]],
                        title: str = "") -> Path:
    """Loss (train solid, validation dashed) and validation Dice per epoch, one colour per run (fold)."""
    fig = _figure(9, 3.6)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, rows) in enumerate(logs.items()):
        color = f"C{i % 10}"
        epochs = [r["epoch"] for r in rows]
        ax1.plot(epochs, [r.get("train_loss", np.nan) for r in rows], "-o", color=color, ms=3,
                 label=f"{name} train")
        ax1.plot(epochs, [r.get("val_loss", np.nan) for r in rows], "--s", color=color, ms=3,
                 label=f"{name} val")
        ax2.plot(epochs, [100 * r.get("val_dice", np.nan) for r in rows], "-o", color=color, ms=3, label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation Dice (%)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if logs:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def type_dpc_bars_png(path: str | Path, by_type: Mapping[str, Mapping[str, Mapping[str, Any]]],
                      types: Sequence[str] | None = None, key: str = "dpc", title: str = "") -> Path:
    """Grouped bars of `key` (DPC) per tumour type, one bar per method, with ± SD over cases as error bars.

    `by_type` is {method: {tumour type: flat summary}} (`aggregate.summarize_by_type` per method).
    """
    methods = list(by_type)
    if types is None:
        types = []
        for m in methods:
            types += [t for t in by_type[m] if t not in types]
    fig = _figure(max(5.0, 1.2 * len(types) * max(1, len(methods)) * 0.5 + 2), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(types))
    for i, m in enumerate(methods):
        means = [_num(by_type[m].get(t, {}).get(key)) for t in types]
        sds = [_num(by_type[m].get(t, {}).get(f"{key}_sd")) for t in types]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, np.nan_to_num(means), width,
               yerr=np.nan_to_num(sds), capsize=3, label=m, color=f"C{i % 10}")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{t}\n(n={_n(by_type, t)})" for t in types], fontsize=8)
    ax.set_ylabel(f"{key.upper()} (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    if len(methods) > 1:
        ax.legend(fontsize=7)
    ax.set_title(title or f"{key.upper()} per tumour type (mean ± SD over cases)", fontsize=9)
    return _save(fig, path)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _n(by_type: Mapping[str, Mapping[str, Mapping[str, Any]]], t: str) -> int:
    return max((int(s[t].get("n_cases") or 0) for s in by_type.values() if t in s), default=0)
