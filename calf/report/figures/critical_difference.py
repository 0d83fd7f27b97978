"""Critical-difference diagrams (Demšar 2006) of the losses' mean ranks, one per group.

A group is one study, dataset, model and ratio, its modalities pooled (the statistics'
``modality == "all"`` rows; per-modality groups are not drawn); its blocks are patients.
Each panel puts the losses on the mean-rank axis (rank 1 = best by the metric's direction),
joins by a bar the losses whose Nemenyi test does not separate them at the study's alpha,
and draws the critical difference over the axis; its title gives the CD, the Friedman
p-value and the number of patients. The
drawing is scikit-posthocs' ``critical_difference_diagram``. A group without a finite
Friedman result or with fewer than two ranked losses says "not enough data".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.layout import ratio_sort_key, ratio_text
from calf.naming import CALF_LOSSES, METRIC_NAMES
from calf.report.figures._common import (
    BASELINE_COLOUR,
    CALF_COLOUR,
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
from calf.stats.collect import GROUP_KEYS, pooled_groups

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLUMNS = {
    "ranks": ("metric", "loss", "mean_rank"),
    "nemenyi": ("metric", "loss_a", "loss_b", "p_value"),
    "friedman": ("metric", "n_patients", "k", "p_value", "alpha", "cd"),
}


def _select(table: "pd.DataFrame", name: str, metric: str) -> "pd.DataFrame":
    missing = [c for c in (*GROUP_KEYS, "modality", *_COLUMNS[name]) if c not in table.columns]
    if missing:
        raise CalfError(f"{name} table: missing column(s) {', '.join(missing)}")
    table = pooled_groups(table, f"{name} table")
    part = table[table["metric"] == metric].copy()
    part["ratio"] = part["ratio"].map(ratio_text)
    for key in ("study", "dataset", "model"):
        part[key] = part[key].astype(str)
    return part


def _p_text(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def build_critical_difference(
    ranks: "pd.DataFrame", nemenyi: "pd.DataFrame", friedman: "pd.DataFrame", metric: str = "dice"
) -> "Figure":
    """The figure: rows (dataset, ratio), columns models, a CD diagram per group."""
    if metric not in METRIC_NAMES:
        raise CalfError(f"metric {metric!r}: expected one of {', '.join(METRIC_NAMES)}")
    ranks = _select(ranks, "ranks", metric)
    nemenyi = _select(nemenyi, "nemenyi", metric)
    friedman = _select(friedman, "friedman", metric)
    groups = {tuple(g) for g in ranks[list(GROUP_KEYS)].itertuples(index=False)}
    groups |= {tuple(g) for g in friedman[list(GROUP_KEYS)].itertuples(index=False)}
    if not groups:
        return message_figure(f"no Friedman test results for metric {metric}")
    several_studies = len({g[0] for g in groups}) > 1
    rows = sorted({(g[0], g[1], g[3]) for g in groups},
                  key=lambda r: (r[0], r[1], ratio_sort_key(r[2])))
    models = model_order({g[2] for g in groups})
    k_max = max(int(ranks.groupby(list(GROUP_KEYS)).size().max()) if not ranks.empty else 2, 2)
    panel_height = 0.9 + 0.22 * (k_max + 1) / 2 + 0.25 * math.ceil(k_max / 3)
    rank_parts = dict(iter(ranks.groupby(list(GROUP_KEYS))))
    pair_parts = dict(iter(nemenyi.groupby(list(GROUP_KEYS))))
    friedman_rows = {tuple(r[k] for k in GROUP_KEYS): r for _, r in friedman.iterrows()}

    with style():
        fig = new_figure(len(models) * 5.2 + 0.4, len(rows) * panel_height + 0.5)
        axes = fig.subplots(len(rows), len(models), squeeze=False)
        for i, (study, dataset, ratio) in enumerate(rows):
            for j, model in enumerate(models):
                key = (study, dataset, model, ratio)
                ax = axes[i, j]
                label = row_label(dataset, ratio, study if several_studies else None)
                heading = f"{label} / {model_name(model)}"
                if key not in groups:
                    ax.set_title(heading)
                    ax.set_axis_off()
                    note(ax, "no runs")
                    continue
                _draw_group(ax, heading, rank_parts.get(key), pair_parts.get(key),
                            friedman_rows.get(key))
        fig.suptitle(
            f"Critical-difference diagrams of the losses' mean {METRIC_NAMES[metric]} ranks\n"
            "(1 = best; bars join losses the Nemenyi test does not separate)", fontsize=9
        )
    return fig


def _draw_group(ax: "Axes", heading: str, ranks, pairs, friedman) -> None:
    """One diagram, or the panel's "not enough data" note."""
    import numpy as np
    import pandas as pd
    import scikit_posthocs

    usable = (
        friedman is not None and ranks is not None and len(ranks) >= 2
        and all(np.isfinite(float(friedman[c])) for c in ("cd", "p_value", "alpha", "n_patients"))
        and np.isfinite(ranks["mean_rank"].to_numpy(dtype=float)).all()
    )
    if not usable:
        ax.set_title(heading)
        ax.set_axis_off()
        note(ax, "not enough data for a Friedman test")
        return
    cd, p, alpha = float(friedman["cd"]), float(friedman["p_value"]), float(friedman["alpha"])
    losses = loss_order(ranks["loss"])
    names = [loss_name(x) for x in losses]
    by_loss = ranks.set_index("loss")["mean_rank"].astype(float)
    series = pd.Series(by_loss.reindex(losses).to_numpy(), index=names)
    # pairs the post-hoc test has no p-value for count as not separated (p = 1)
    matrix = pd.DataFrame(1.0, index=names, columns=names)
    if pairs is not None:
        for a, b, value in pairs[["loss_a", "loss_b", "p_value"]].itertuples(index=False):
            if a in losses and b in losses and np.isfinite(value):
                a, b = loss_name(a), loss_name(b)
                matrix.loc[a, b] = matrix.loc[b, a] = value
    colours = {loss_name(x): CALF_COLOUR if x in CALF_LOSSES else BASELINE_COLOUR for x in losses}
    scikit_posthocs.critical_difference_diagram(
        series, matrix, alpha=alpha, ax=ax, color_palette=colours,
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 7}, marker_props={"s": 14},
    )
    k = len(losses)
    ax.set_xlim(1, k)
    ax.set_xticks(range(1, k + 1))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(ax.get_ylim()[0] - 0.3, 0.25)
    _draw_cd_bar(ax, cd, k)
    ax.set_title(
        f"{heading}\nCD = {cd:.2f}, Friedman p = {_p_text(p)} "
        f"(n = {int(friedman['n_patients'])} patients)",
        pad=30,
    )


def _draw_cd_bar(ax: "Axes", cd: float, k: int) -> None:
    """The CD as a bar from rank 1, above the rank axis's labels (cut at rank k if longer)."""
    from matplotlib.transforms import offset_copy

    bar = offset_copy(ax.transData, fig=ax.figure, y=18, units="points")
    text = offset_copy(ax.transData, fig=ax.figure, y=21, units="points")
    end = min(1 + cd, k)
    ax.plot([1, end], [0, 0], transform=bar, color="k", linewidth=1.5, marker="|",
            markersize=6, clip_on=False)
    ax.text((1 + end) / 2, 0, f"CD = {cd:.2f}", transform=text, ha="center", va="bottom",
            fontsize=7, clip_on=False)


def plot_critical_difference(
    ranks: "pd.DataFrame",
    nemenyi: "pd.DataFrame",
    friedman: "pd.DataFrame",
    out_prefix: str | Path,
    metric: str = "dice",
    force: bool = False,
) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: the metric's CD diagram of every group."""
    return save_figure(build_critical_difference(ranks, nemenyi, friedman, metric), out_prefix,
                       force)
