"""What the report's figures share: display names, colours, the grid layout and the save.

Figures are built on a ``matplotlib.figure.Figure`` with its own Agg canvas, never through
pyplot's global state, and saved as PNG and SVG side by side: both are rendered into
temporary files beside the targets and renamed into place only when both succeeded, so a
failure leaves the previous outputs (or nothing) behind. The SVG carries no date and fixed
element ids, so the same input gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from calf._fs import atomic_files
from calf.errors import CalfError
from calf.layout import NATURAL
from calf.naming import CALF_LOSSES, LOSS_NAMES, MODEL_NAMES, display, ordered

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CALF_COLOUR = "#cc3311"
BASELINE_COLOUR = "#4477aa"
# CALF's branches (README.md, "The method") in the order of calf.losses.BRANCHES (a test
# checks it), each with a fixed colour (Paul Tol's "bright" scheme) in every figure
BRANCH_COLOURS = {
    "fisher": "#4477aa",
    "logit": "#66ccee",
    "arcsine": "#228833",
    "log10": "#ccbb44",
    "ln": "#ee6677",
    "bce_dice": "#aa3377",
}
DPI = 150
MAX_WIDTH = 24.0  # inches: a figure never grows past this; its panels shrink instead
MAX_HEIGHT = 32.0

def loss_name(loss: str) -> str:
    return display(loss, LOSS_NAMES)


def model_name(model: str) -> str:
    return display(model, MODEL_NAMES)


def loss_colour(loss: str) -> str:
    return CALF_COLOUR if loss in CALF_LOSSES else BASELINE_COLOUR


def loss_order(losses: Iterable[str]) -> list[str]:
    """Baselines, then CALF and its region variant (``calf.naming.LOSS_NAMES``); others after."""
    return ordered(losses, LOSS_NAMES)


def model_order(models: Iterable[str]) -> list[str]:
    return ordered(models, MODEL_NAMES)


def row_label(dataset: str, ratio: str, study: str | None = None) -> str:
    """A panel row's label: the dataset, with its ratio unless natural, after the study."""
    text = dataset if ratio == NATURAL else f"{dataset}, ratio {ratio}"
    return text if study is None else f"{study}: {text}"


@contextmanager
def style() -> Iterator[None]:
    """Settings in force while a figure is built and saved.

    Text is never parsed as mathtext (case IDs and dataset names may hold ``$``), and SVG
    ids come from a fixed salt so that the output is reproducible.
    """
    import matplotlib

    with matplotlib.rc_context(
        {"text.parse_math": False, "svg.hashsalt": "calf-report", "font.size": 8,
         "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7}
    ):
        yield


def new_figure(width: float, height: float, constrained: bool = True) -> "Figure":
    """A Figure on its own Agg canvas, at most MAX_WIDTH x MAX_HEIGHT inches.

    ``constrained``: matplotlib's constrained layout places the panels (else the caller does).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, MAX_WIDTH), min(height, MAX_HEIGHT)), dpi=DPI,
                 layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def message_figure(text: str) -> "Figure":
    """A small figure that only says ``text`` (an output that must exist but has no data)."""
    with style():
        fig = new_figure(6.0, 1.6)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def note(ax: "Axes", text: str) -> None:
    """Blank a panel and write ``text`` in its middle (no data to draw)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.35", transform=ax.transAxes)


def save_figure(fig: "Figure", out_prefix: str | Path, force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``{out_prefix}.svg`` together (``calf._fs.atomic_files``:
    both or neither); return both paths. Existing files are replaced only with ``force``;
    folders made for them are removed again when the save fails."""
    prefix = Path(out_prefix)
    targets = [prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".svg")]
    for target in targets:
        if target.is_dir():
            raise CalfError(f"{target}: is a directory, expected a file path")
    created = [p for p in (prefix.parent, *prefix.parent.parents) if not p.exists()]
    done = False
    try:
        with style(), atomic_files(targets, force=force) as (png, svg):
            fig.savefig(png, format="png", dpi=DPI)
            fig.set_layout_engine("none")  # keep the layout the PNG computed: same, and faster
            fig.savefig(svg, format="svg", dpi=DPI, metadata={"Date": None})
        done = True
    finally:
        if not done:
            for folder in created:  # deepest first: only the folders made here, if empty
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
    return targets
