"""The report's figures (matplotlib, PNG and SVG): one module per kind.

Each ``plot_*`` writes ``{out_prefix}.png`` and ``{out_prefix}.svg`` atomically (temporary
files renamed into place, ``calf._fs``; a failure leaves nothing new; existing files are
replaced only with ``force``) and returns their paths; its ``build_*`` companion returns the
``matplotlib.figure.Figure`` without saving it.
"""

from calf.report.figures.branches import (
    branch_shares,
    build_branch_shares,
    plot_branch_shares,
)
from calf.report.figures.critical_difference import (
    build_critical_difference,
    plot_critical_difference,
)
from calf.report.figures.dice import build_dice, plot_dice
from calf.report.figures.imbalance import build_imbalance, plot_imbalance
from calf.report.figures.overlays import build_overlays, collect_overlays, plot_overlays

__all__ = [
    "branch_shares",
    "build_branch_shares",
    "build_critical_difference",
    "build_dice",
    "build_imbalance",
    "build_overlays",
    "collect_overlays",
    "plot_branch_shares",
    "plot_critical_difference",
    "plot_dice",
    "plot_imbalance",
    "plot_overlays",
]
