"""Preview PNG of a case: PV | ART axial slices through the largest lesion, with liver (green) and tumour
(red) label contours. Radiological display: patient's right on the image's left, anterior at the top."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpliver.io.atomic import atomic_path
from mpliver.io.labels import LIVER, TUMOR

WINDOW_HU = (-160.0, 240.0)  # abdominal window (W 400, L 40)


def _display(slice_ij: np.ndarray) -> np.ndarray:
    """(i, j) slice -> (row, col) image: rows anterior→posterior, columns patient right→left."""
    return slice_ij[::-1, ::-1].T


def _tumour_slice(label: np.ndarray) -> int:
    counts = np.count_nonzero(label == TUMOR, axis=(0, 1))
    if counts.max() > 0:
        return int(np.argmax(counts))
    liver = np.count_nonzero(label >= LIVER, axis=(0, 1))
    return int(np.argmax(liver)) if liver.max() > 0 else label.shape[2] // 2


def save_preview(
    path: str | Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], title: str = ""
) -> Path:
    """Write a PNG with one panel per phase (in the order given), each at its own slice of largest tumour
    area, with its label's contours. Uses the Agg backend (no display needed)."""
    import matplotlib  # lazy: matplotlib is slow to import and only previews need it

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # lazy: as above

    fig = Figure(figsize=(4.0 * len(images), 4.3), dpi=80)
    for n, (phase, image) in enumerate(images.items()):
        ax = fig.add_subplot(1, len(images), n + 1)
        label = labels[phase]
        k = _tumour_slice(label)
        ax.imshow(
            _display(image[:, :, k]),
            cmap="gray",
            vmin=WINDOW_HU[0],
            vmax=WINDOW_HU[1],
            interpolation="nearest",
        )
        lab = _display(label[:, :, k])
        if (lab >= LIVER).any():
            ax.contour(lab >= LIVER, levels=[0.5], colors="lime", linewidths=0.8)
        if (lab == TUMOR).any():
            ax.contour(lab == TUMOR, levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"{phase}  (slice {k})", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
