"""How stable a group's ranking of the losses is: challengeR's blob plot and significance map.

Both read the tables of ``calf analyse`` (``rank_counts.csv``, ``rank_stability.csv``,
``significance_map.csv``, made by ``calf.analysis.ranks`` on ``calf.stats.ranking``). A
group is one study, dataset, model and ratio; the ranking orders its losses by their mean
per-patient metric (rank 1 = best by the metric's direction). One panel per (group,
metric): rows (dataset, ratio, metric), columns models.

``build_rank_blobs``: the losses along x in their full-data rank order, the rank on y (1 at
the top); a disc per (loss, rank) whose area is proportional to the share of bootstrap
resamples (over patients) in which the loss got that rank, a cross at its full-data rank,
and beside it the median and the 2.5-97.5% quantiles of its bootstrap rank. The title gives
the share of resamples in which the full-data best loss stays best and Kendall's tau
between the bootstrap and full rankings (median, 95% interval).

``build_significance_map``: a k x k grid of the losses in full-data rank order on both
axes; the cell in column a, row b is filled when a is significantly better than b (one-sided
Wilcoxon signed-rank test on the patients' paired values, Holm over the group's ordered
pairs: the table's ``significant``), left light when not; the diagonal stays blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from calf.layout import ratio_sort_key
from calf.naming import METRIC_NAMES
from calf.report.figures._common import (
    loss_colour,
    loss_name,
    loss_order,
    message_figure,
    model_name,
    model_order,
    new_figure,
    note,
    row_label,
    save_figure,
    style,
)
from calf.report.figures.advantage import checked_table
from calf.stats.collect import GROUP_KEYS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANEL_KEYS = (*GROUP_KEYS, "metric")
COUNT_COLUMNS = (*PANEL_KEYS, "loss", "full_rank", "rank", "count", "share")
STABILITY_COLUMNS = (*PANEL_KEYS, "n_patients", "resamples", "best", "best_share",
                     "tau_median", "tau_low", "tau_high")
MAP_COLUMNS = (*PANEL_KEYS, "loss_a", "loss_b", "significant")
DISC_AREA = 300.0  # points^2 of a disc with share 1 (the loss always got that rank)
QUANTILES = (0.025, 0.5, 0.975)
QUANTILE_OFFSET = 0.3  # the quantile line sits this far right of its loss's discs
SIGNIFICANT_COLOUR = "#ddaa33"  # challengeR's map: yellow for "significantly better"
NOT_SIGNIFICANT_COLOUR = "#bbccee"


def _panels(tables: list["pd.DataFrame"]) -> tuple[list[tuple], list[str], bool]:
    """The figure's rows (study, dataset, ratio, metric), its models, and whether it holds
    several studies, from the panel keys of every table."""
    keys = {tuple(k) for t in tables for k in t[list(PANEL_KEYS)].itertuples(index=False)}
    metrics = list(METRIC_NAMES)
    rows = sorted({(k[0], k[1], k[3], k[4]) for k in keys},
                  key=lambda r: (r[0], r[1], ratio_sort_key(r[2]),
                                 metrics.index(r[3]) if r[3] in metrics else len(metrics), r[3]))
    return rows, model_order({k[2] for k in keys}), len({k[0] for k in keys}) > 1


def _heading(row: tuple, model: str, several_studies: bool) -> str:
    study, dataset, ratio, metric = row
    label = row_label(dataset, ratio, study if several_studies else None)
    return f"{label} / {model_name(model)}: {METRIC_NAMES.get(metric, metric)}"


def rank_order(counts: "pd.DataFrame | None", losses) -> list[str]:
    """The losses by full-data rank (ties and losses without one in the suite's order)."""
    import math

    suite = loss_order(set(losses))
    full = {} if counts is None else dict(zip(counts["loss"], counts["full_rank"].astype(float)))
    return sorted(suite, key=lambda x: (full.get(x, math.inf), suite.index(x)))


def _grid(rows: list, models: list[str], k_max: int, cell: float):
    """A figure with a panel per row and model, sized to the largest ranking."""
    side = max(cell * k_max + 1.3, 2.6)
    fig = new_figure(len(models) * side + 0.6, len(rows) * (side + 0.5) + 1.2)
    return fig, fig.subplots(len(rows), len(models), squeeze=False)


def _each_panel(axes, rows, models, several: bool, parts: dict, missing: str):
    """(axes, panel key, heading) of every panel that has data in ``parts``; a panel
    without gets its heading and the note ``missing``."""
    for i, row in enumerate(rows):
        for j, model in enumerate(models):
            ax, key = axes[i, j], (row[0], row[1], model, row[2], row[3])
            heading = _heading(row, model, several)
            if key in parts:
                yield ax, key, heading
            else:
                ax.set_title(heading)
                note(ax, missing)


def build_rank_blobs(rank_counts: "pd.DataFrame", rank_stability: "pd.DataFrame") -> "Figure":
    """The figure: per (group, metric) the bootstrap distribution of every loss's rank."""
    counts = checked_table(rank_counts, "rank_counts table", COUNT_COLUMNS)
    stability = checked_table(rank_stability, "rank_stability table", STABILITY_COLUMNS)
    if counts.empty:
        return message_figure("no bootstrap rankings to draw")
    rows, models, several = _panels([counts])
    count_parts = dict(iter(counts.groupby(list(PANEL_KEYS))))
    stability_rows = {tuple(r[k] for k in PANEL_KEYS): r for _, r in stability.iterrows()}
    k_max = int(counts.groupby(list(PANEL_KEYS))["loss"].nunique().max())
    with style():
        fig, axes = _grid(rows, models, k_max, 0.5)
        for ax, key, heading in _each_panel(axes, rows, models, several, count_parts,
                                            "no ranking"):
            _draw_blobs(ax, count_parts[key], k_max)
            ax.set_title(f"{heading}\n{_stability_text(stability_rows.get(key))}")
        _blob_legend(fig)
        fig.suptitle("Bootstrap ranks of the losses (resamples of patients; 1 = best)\n"
                     "disc area = share of resamples with that rank; x = full-data rank; "
                     "line = median and 95% interval", fontsize=9)
    return fig


def _stability_text(row) -> str:
    """The title's second line: the best loss's share of rank 1 and Kendall's tau."""
    if row is None:
        return "no rank stability record"
    return (f"{loss_name(str(row['best']))} best in {float(row['best_share']):.0%} of "
            f"{int(row['resamples'])}; tau {float(row['tau_median']):.2f} "
            f"[{float(row['tau_low']):.2f}, {float(row['tau_high']):.2f}], "
            f"n = {int(row['n_patients'])}")


def rank_quantiles(part: "pd.DataFrame") -> tuple[float, float, float]:
    """The 2.5%, 50% and 97.5% quantiles of one loss's bootstrap rank (ranks weighted by
    their counts)."""
    import numpy as np

    ranks = part["rank"].to_numpy(dtype=float)
    weights = part["count"].to_numpy(dtype=float)
    if weights.sum() <= 0:
        return (float("nan"),) * 3
    values = np.quantile(ranks, QUANTILES, weights=weights, method="inverted_cdf")
    return tuple(float(v) for v in values)


def _draw_blobs(ax: "Axes", part: "pd.DataFrame", k_max: int) -> None:
    """One panel: the discs (one scatter), the full-data ranks, the quantile lines."""
    order = rank_order(part, part["loss"].unique())
    position = {loss: x for x, loss in enumerate(order, start=1)}
    shown = part[part["share"].astype(float) > 0]
    ax.scatter(shown["loss"].map(position), shown["rank"].astype(float),
               s=shown["share"].astype(float) * DISC_AREA,
               c=[loss_colour(x) for x in shown["loss"]], alpha=0.75, linewidths=0, zorder=2)
    full = part.drop_duplicates("loss")
    ax.scatter(full["loss"].map(position), full["full_rank"].astype(float), marker="x", s=28,
               color="k", linewidths=1.0, zorder=4)
    for loss, x in position.items():
        low, median, high = rank_quantiles(part[part["loss"] == loss])
        ax.plot([x + QUANTILE_OFFSET] * 2, [low, high], color="0.2", linewidth=1.0, zorder=3)
        ax.plot(x + QUANTILE_OFFSET, median, marker="_", markersize=7, color="0.2", zorder=3)
    ax.set_xlim(0.4, len(order) + 0.7)
    ax.set_ylim(k_max + 0.6, 0.4)  # rank 1 at the top
    ax.set_xticks(range(1, len(order) + 1), [loss_name(x) for x in order], rotation=45,
                  ha="right")
    ax.set_yticks(range(1, k_max + 1))
    ax.set_ylabel("rank")
    ax.grid(axis="y", color="0.92", linewidth=0.6)
    ax.set_axisbelow(True)


def _blob_legend(fig: "Figure") -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=loss_colour("calf"), label="CALF"),
        Line2D([], [], marker="o", linestyle="", color=loss_colour("bce"), label="baseline"),
        Line2D([], [], marker="x", linestyle="", color="k", label="full-data rank"),
        Line2D([], [], marker="_", color="0.2", label="bootstrap median, 2.5-97.5%"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))


def plot_rank_blobs(rank_counts: "pd.DataFrame", rank_stability: "pd.DataFrame",
                    out_prefix: str | Path, force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: the blob plot of every group and metric."""
    return save_figure(build_rank_blobs(rank_counts, rank_stability), out_prefix, force)


def _significant(column: "pd.Series") -> "pd.Series":
    """The ``significant`` column as bool, whether read as bool or as text from a CSV."""
    return column.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def build_significance_map(significance_map: "pd.DataFrame", rank_stability: "pd.DataFrame",
                           rank_counts: "pd.DataFrame | None" = None) -> "Figure":
    """The figure: per (group, metric) which loss is significantly better than which.

    The losses are ordered by their full-data rank from ``rank_counts`` when given, else by
    the number of losses each is significantly better than (then the suite's order)."""
    pairs = checked_table(significance_map, "significance_map table", MAP_COLUMNS)
    pairs["significant"] = _significant(pairs["significant"])
    stability = checked_table(rank_stability, "rank_stability table", STABILITY_COLUMNS)
    counts = (None if rank_counts is None
              else checked_table(rank_counts, "rank_counts table", COUNT_COLUMNS))
    if pairs.empty:
        return message_figure("no pairwise tests of the losses to draw")
    rows, models, several = _panels([pairs])
    pair_parts = dict(iter(pairs.groupby(list(PANEL_KEYS))))
    count_parts = {} if counts is None else dict(iter(counts.groupby(list(PANEL_KEYS))))
    stability_rows = {tuple(r[k] for k in PANEL_KEYS): r for _, r in stability.iterrows()}
    k_max = max(len(_map_order(p, None)) for p in pair_parts.values())
    with style():
        fig, axes = _grid(rows, models, k_max, 0.42)
        for ax, key, heading in _each_panel(axes, rows, models, several, pair_parts,
                                            "no tests"):
            order = _map_order(pair_parts[key], count_parts.get(key))
            _draw_map(ax, pair_parts[key], order)
            ax.set_title(f"{heading}\n{_map_text(pair_parts[key], stability_rows.get(key))}")
        _map_legend(fig)
        fig.suptitle("Significance maps: a filled cell = loss a (x) is significantly "
                     "better than loss b (y)\n(one-sided Wilcoxon signed-rank tests on paired "
                     "patients, Holm over each panel's ordered pairs)", fontsize=9)
    return fig


def _map_order(pairs: "pd.DataFrame", counts: "pd.DataFrame | None") -> list[str]:
    losses = set(pairs["loss_a"]) | set(pairs["loss_b"])
    if counts is not None:
        return rank_order(counts, losses)
    wins = pairs[pairs["significant"]].groupby("loss_a").size()
    suite = loss_order(losses)
    return sorted(suite, key=lambda x: (-int(wins.get(x, 0)), suite.index(x)))


def _map_text(pairs: "pd.DataFrame", stability) -> str:
    """The title's second line: how many ordered pairs are significant, of how many
    patients (the tests' own count, else the rank stability record's)."""
    import pandas as pd

    n = pairs["n_patients"].max() if "n_patients" in pairs.columns else None
    if pd.isna(n) and stability is not None:
        n = stability["n_patients"]
    text = f"{int(pairs['significant'].sum())} of {len(pairs)} ordered pairs significant"
    return text if pd.isna(n) else f"{text}, n = {int(n)}"


def _draw_map(ax: "Axes", pairs: "pd.DataFrame", order: list[str]) -> None:
    """One panel: a filled square per significant (a, b), a light one per other tested
    pair, nothing on the diagonal or for untested pairs."""
    from matplotlib.patches import Rectangle

    index = {loss: i for i, loss in enumerate(order)}
    for a, b, significant in pairs[["loss_a", "loss_b", "significant"]].itertuples(index=False):
        if a == b or a not in index or b not in index:
            continue
        colour = SIGNIFICANT_COLOUR if significant else NOT_SIGNIFICANT_COLOUR
        ax.add_patch(Rectangle((index[a] - 0.5, index[b] - 0.5), 1, 1, facecolor=colour,
                               edgecolor="white", linewidth=1.0))
    k = len(order)
    names = [loss_name(x) for x in order]
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)  # the best loss at the top and at the left
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_aspect("equal")
    ax.set_xlabel("loss a")
    ax.set_ylabel("loss b")
    ax.tick_params(length=0)


def _map_legend(fig: "Figure") -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=SIGNIFICANT_COLOUR, label="a significantly better than b"),
               Patch(color=NOT_SIGNIFICANT_COLOUR, label="not significant")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))


def plot_significance_map(significance_map: "pd.DataFrame", rank_stability: "pd.DataFrame",
                          out_prefix: str | Path, rank_counts: "pd.DataFrame | None" = None,
                          force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: the significance map of every group."""
    return save_figure(build_significance_map(significance_map, rank_stability, rank_counts),
                       out_prefix, force)


__all__ = ["build_rank_blobs", "build_significance_map", "plot_rank_blobs",
           "plot_significance_map", "rank_order", "rank_quantiles"]
