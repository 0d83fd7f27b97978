"""Overlay PNGs: one axial slice in gray with the truth and prediction outlines on top.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change). The
store's slices are RAS arrays (row = x, right-left; column = y, posterior-anterior), shown
transposed with the origin at the bottom: anterior up, the patient's right on the right
(neurological convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

TRUTH_COLOUR = "#00e5ff"  # cyan
PREDICTION_COLOUR = "#ff3d00"  # red-orange


def overlay_slice(truth: np.ndarray, pred: np.ndarray) -> int:
    """The slice to show of ``(n, S, S)`` stacks: the largest tumour, else the largest
    prediction, else the middle one (first of equals)."""
    import numpy as np

    for stack in (truth, pred):
        areas = stack.reshape(len(stack), -1).sum(axis=1)
        if areas.max() > 0:
            return int(np.argmax(areas))
    return len(truth) // 2


def write_overlay(
    path: str | Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str
) -> None:
    """Write a PNG of a 2-D ``image`` (values in [0, 1]) with both masks' outlines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    import numpy as np

    fig = Figure(figsize=(4.8, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(image.T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest")
    # a zero border, so that a mask touching the image edge still gets a closed outline
    xs, ys = np.arange(-1, image.shape[0] + 1), np.arange(-1, image.shape[1] + 1)
    handles = []
    for mask, colour, label in (
        (truth, TRUTH_COLOUR, "truth"),
        (pred, PREDICTION_COLOUR, "prediction"),
    ):
        if mask.any():  # an empty mask has no outline (and matplotlib would warn)
            padded = np.pad(mask.T.astype(float), 1)
            ax.contour(xs, ys, padded, levels=[0.5], colors=[colour], linewidths=1.2)
        handles.append(
            Line2D([], [], color=colour, label=label if mask.any() else f"{label} (empty)")
        )
    ax.set_xlim(-0.5, image.shape[0] - 0.5)
    ax.set_ylim(-0.5, image.shape[1] - 0.5)
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    fig.savefig(path, format="png")
