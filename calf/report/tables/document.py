"""What a comparison table holds, independent of its file format.

A ``Document`` is a title, caption paragraphs and ``Block``s (one table each, with notes
printed under it). Cells hold their text as shown, whether they are bold, and significance
markers printed as a superscript; ``calf.report.tables.render`` writes them as Markdown,
LaTeX and HTML. Also here: the number formats shared by every table (display names and
orders: ``calf.naming``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from calf.layout import NATURAL, ratio_text

# decimals shown: 3 for metrics in [0, 1], 2 for distances
METRIC_DECIMALS = {"dice": 3, "iou": 3, "hd95": 2, "nsd": 3, "sensitivity": 3,
                   "specificity": 3, "precision": 3, "lesion_dice": 3, "lesion_hd95": 2,
                   "sq_dsc": 3, "pq_dsc": 3, "sq_hd95": 2}
MISSING = "–"  # en dash: no value


@dataclass(frozen=True)
class Column:
    """A column heading; consecutive columns with the same non-empty ``group`` share a
    spanning heading above theirs. ``numeric`` columns are right-aligned."""

    label: str
    group: str = ""
    numeric: bool = True


@dataclass(frozen=True)
class Cell:
    """A value as shown (plain text; each format escapes it), bold or not, with
    significance ``markers`` (symbols) set as a superscript after it."""

    text: str
    bold: bool = False
    markers: str = ""


@dataclass
class Block:
    """One table: its title, columns, rows of cells, and the notes printed under it."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Document:
    """Tables of one output file: a title, caption paragraphs, the blocks."""

    title: str
    caption: list[str]
    blocks: list[Block]


def ratio_title(ratio: object) -> str:
    """A block title's ratio: "natural ratio" or "ratio 0.25" (``calf.layout.ratio_text``)."""
    text = ratio_text(ratio)
    return f"{NATURAL} ratio" if text == NATURAL else f"ratio {text}"


def fmt(value: float, decimals: int, signed: bool = False) -> str:
    """A number with fixed decimals ('–' for NaN); ``signed`` adds '+' to positives."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    return text.replace("-", "−")  # a true minus sign
