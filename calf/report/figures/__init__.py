"""The report's figures (matplotlib, PNG and SVG): one module per kind.

Each ``plot_*`` writes ``{out_prefix}.png`` and ``{out_prefix}.svg`` atomically (temporary
files renamed into place, ``calf._fs``; a failure leaves nothing new; existing files are
replaced only with ``force``) and returns their paths; its ``build_*`` companion returns the
``matplotlib.figure.Figure`` without saving it.
"""

from calf.report.figures.advantage import (
    build_advantage_volume,
    build_imbalance_advantage,
    plot_advantage_volume,
    plot_imbalance_advantage,
)
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
from calf.report.figures.ranking import (
    build_rank_blobs,
    build_significance_map,
    plot_rank_blobs,
    plot_significance_map,
)

__all__ = [
    "branch_shares",
    "build_advantage_volume",
    "build_branch_shares",
    "build_critical_difference",
    "build_dice",
    "build_imbalance",
    "build_imbalance_advantage",
    "build_overlays",
    "build_rank_blobs",
    "build_significance_map",
    "collect_overlays",
    "plot_advantage_volume",
    "plot_branch_shares",
    "plot_critical_difference",
    "plot_dice",
    "plot_imbalance",
    "plot_imbalance_advantage",
    "plot_overlays",
    "plot_rank_blobs",
    "plot_significance_map",
]
