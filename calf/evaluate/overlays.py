"""Overlays: one axial slice in gray with the truth and prediction outlines on top.

``draw_overlay`` is the one drawing of a tile (image and both outlines, nothing else): the
per-run PNG (``write_overlay``, which adds a title and a legend) and the report's overlay
grid (``calf.report.figures.overlays``) both use it, so the two always look alike. The grid
draws from the arrays of the shown slice (``write_overlay_arrays``, one ``.npz`` beside each
PNG; ``read_overlay_arrays``), not from the PNG, so that its tiles carry no nested title or
legend.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change). The
store's slices are RAS arrays (row = x, right-left; column = y, posterior-anterior), shown
transposed with the origin at the bottom: anterior up, the patient's right on the right
(neurological convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from calf._fs import write_with
from calf.errors import CalfError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

TRUTH_COLOUR = "#00e5ff"  # cyan
PREDICTION_COLOUR = "#ff3d00"  # red-orange
ARRAY_KEYS = ("image", "truth", "pred")  # the .npz of one shown slice


def overlay_slice(truth: np.ndarray, pred: np.ndarray) -> int:
    """The slice to show of ``(n, S, S)`` stacks: the largest tumour, else the largest
    prediction, else the middle one (first of equals)."""
    import numpy as np

    for stack in (truth, pred):
        areas = stack.reshape(len(stack), -1).sum(axis=1)
        if areas.max() > 0:
            return int(np.argmax(areas))
    return len(truth) // 2


def draw_overlay(
    ax: Axes, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, linewidth: float = 1.2
) -> None:
    """Draw a 2-D ``image`` (uint8, or float in [0, 1]) in gray on ``ax`` with the outlines
    of ``truth`` (cyan) and ``pred`` (red-orange); no title, no legend, no ticks."""
    import numpy as np

    shown = image / 255.0 if image.dtype == np.uint8 else image
    ax.imshow(shown.T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest")
    # a zero border, so that a mask touching the image edge still gets a closed outline
    xs, ys = np.arange(-1, image.shape[0] + 1), np.arange(-1, image.shape[1] + 1)
    for mask, colour in ((truth, TRUTH_COLOUR), (pred, PREDICTION_COLOUR)):
        if mask.any():  # an empty mask has no outline (and matplotlib would warn)
            padded = np.pad(mask.T.astype(float), 1)
            ax.contour(xs, ys, padded, levels=[0.5], colors=[colour], linewidths=linewidth)
    ax.set_xlim(-0.5, image.shape[0] - 0.5)
    ax.set_ylim(-0.5, image.shape[1] - 0.5)
    ax.set_xticks([])  # ticks and frame off, axis labels still shown (the grid's row labels)
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def legend_handles(truth_empty: bool = False, pred_empty: bool = False) -> list[Line2D]:
    """Legend entries for the two outlines (``(empty)`` where a mask has none)."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color=colour, label=f"{label} (empty)" if empty else label)
        for colour, label, empty in (
            (TRUTH_COLOUR, "truth", truth_empty),
            (PREDICTION_COLOUR, "prediction", pred_empty),
        )
    ]


def write_overlay(
    path: str | Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str
) -> None:
    """Write a PNG of a 2-D ``image`` (uint8, or values in [0, 1]) with both masks'
    outlines, a title and a legend, atomically (``calf._fs``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_overlay(ax, image, truth, pred)
    handles = legend_handles(not truth.any(), not pred.any())
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(title, fontsize=8)
    write_with(path, lambda handle: fig.savefig(handle, format="png"))


def write_overlay_arrays(
    path: str | Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray
) -> None:
    """Write the shown slice as ``.npz`` (``image`` as given, ``truth`` and ``pred`` bool)
    atomically (``calf._fs``)."""
    import numpy as np

    path = Path(path)
    arrays = {"image": np.asarray(image), "truth": np.asarray(truth, dtype=bool),
              "pred": np.asarray(pred, dtype=bool)}
    for key, arr in arrays.items():
        if arr.ndim != 2 or arr.shape != arrays["image"].shape:
            raise CalfError(f"{path}: {key} must be 2-D of the image's shape, got {arr.shape}")
    # a file object: numpy adds no second .npz suffix
    write_with(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_overlay_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image``, ``truth``, ``pred`` of an overlay ``.npz``; FileNotFoundError when it is
    not there, CalfError naming the file (and key) when it is not a readable overlay."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ARRAY_KEYS if k not in data.files]
            if missing:
                raise CalfError(f"{path}: not an overlay array file (no key {missing[0]!r})")
            image, truth, pred = (data[k] for k in ARRAY_KEYS)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CalfError(f"{path}: not a readable overlay .npz ({err})") from None
    if image.ndim != 2 or truth.shape != image.shape or pred.shape != image.shape:
        raise CalfError(
            f"{path}: key image must be 2-D and truth, pred of its shape, got "
            f"{image.shape}, {truth.shape}, {pred.shape}"
        )
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise CalfError(f"{path}: key image: expected uint8 or float, got {image.dtype}")
    return image, truth.astype(bool), pred.astype(bool)
