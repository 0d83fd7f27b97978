"""Per-patient metric distributions by loss: a box and the patients' points per loss.

One panel per (dataset, ratio) row and model column. A patient's value is its mean over
modalities, then exams, then seeds (``calf.stats.collect.patient_means``, NaN values left
out), so each point is one patient, the unit the tests pair. Boxes show the quartiles and
1.5 IQR whiskers without fliers (the points show every patient); CALF and its region
variant are drawn in red, the baselines in blue. The jitter is seeded: the same input draws
the same figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.evaluate.metrics import LOWER_IS_BETTER
from calf.layout import ratio_sort_key, ratio_text
from calf.naming import METRIC_NAMES
from calf.report.figures._common import (
    loss_colour,
    loss_name,
    loss_order,
    model_name,
    model_order,
    new_figure,
    note,
    row_label,
    save_figure,
    style,
)
from calf.stats.collect import ROW_KEYS, indexed_rows, patient_means

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# values in [0, 1]; the others are distances in mm
_BOUNDED = ("dice", "iou", "nsd", "sensitivity", "specificity", "precision", "lesion_dice",
            "sq_dsc", "pq_dsc")
_JITTER = 0.18  # half-width of the points' spread around a box, in box positions
_RUN_KEYS = ("study", "dataset", "model", "ratio", "loss")


def patient_values(cases: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    """One row per patient and run setting: the metric's patient mean (NaN if none)."""
    missing = [c for c in (*_RUN_KEYS, *ROW_KEYS, metric) if c not in cases.columns]
    if missing:
        raise CalfError(f"case metrics: missing column(s) {', '.join(missing)}")
    rows = indexed_rows(cases.assign(ratio=cases["ratio"].map(ratio_text)), [metric],
                        before=_RUN_KEYS)
    return patient_means(rows, by=_RUN_KEYS).reset_index()


def build_dice(cases: "pd.DataFrame", metric: str = "dice",
               subtitle: str | None = None) -> "Figure":
    """The figure: rows (dataset, ratio), columns models, a box and points per loss."""
    import numpy as np

    if metric not in METRIC_NAMES:
        raise CalfError(f"metric {metric!r}: expected one of {', '.join(METRIC_NAMES)}")
    if cases.empty:
        raise CalfError("no per-case metrics to plot")
    values = patient_values(cases, metric)
    several_studies = values["study"].nunique() > 1
    rows = sorted(
        values[["study", "dataset", "ratio"]].drop_duplicates().itertuples(index=False),
        key=lambda r: (r.study, r.dataset, ratio_sort_key(r.ratio)),
    )
    models = model_order(values["model"].unique())
    losses = loss_order(values["loss"].unique())
    by_panel = {key: part for key, part in values.groupby(["study", "dataset", "ratio", "model"])}
    finite = values[metric].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if metric in _BOUNDED:
        limits = (-0.03, 1.03)
    else:
        top = float(finite.max()) if finite.size else 1.0
        limits = (-0.03 * top, 1.05 * top if top > 0 else 1.0)
    higher = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"

    with style():
        width = max(len(models) * (0.42 * len(losses) + 1.0) + 0.6, 5.0)
        fig = new_figure(width, len(rows) * 2.6 + 0.9)
        axes = fig.subplots(len(rows), len(models), squeeze=False)
        positions = np.arange(1, len(losses) + 1)
        for i, row in enumerate(rows):
            for j, model in enumerate(models):
                ax = axes[i, j]
                if i == 0:
                    ax.set_title(model_name(model), fontsize=9)
                if j == 0:
                    study = row.study if several_studies else None
                    label = row_label(row.dataset, row.ratio, study)
                    ax.set_ylabel(f"{label}\n{METRIC_NAMES[metric]}")
                part = by_panel.get((row.study, row.dataset, row.ratio, model))
                if part is None:
                    note(ax, "no runs")
                    continue
                _draw_panel(ax, part, metric, losses, positions, seed=i * len(models) + j)
                ax.set_ylim(*limits)
                ax.set_xlim(0.4, len(losses) + 0.6)
                ax.set_xticks(positions)
                bottom = i == len(rows) - 1
                ax.set_xticklabels([loss_name(x) for x in losses] if bottom else [],
                                   rotation=45, ha="right")
                ax.grid(axis="y", color="0.9", linewidth=0.6)
                ax.set_axisbelow(True)
        fig.suptitle(
            f"{METRIC_NAMES[metric]} per patient ({higher})\n"
            "box = quartiles, points = patients (mean over modalities, exams, seeds)"
            + (f"\n{subtitle}" if subtitle else ""),
            fontsize=9
        )
    return fig


def _draw_panel(ax, part, metric, losses, positions, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    for loss, x in zip(losses, positions):
        y = part.loc[part["loss"] == loss, metric].to_numpy(dtype=float)
        y = y[np.isfinite(y)]
        if y.size == 0:
            continue
        colour = loss_colour(loss)
        # the points under the box, fainter the more there are; rasterized: thousands of
        # markers stay one image in the SVG
        ax.scatter(x + rng.uniform(-_JITTER, _JITTER, y.size), y, s=4, color=colour,
                   alpha=min(0.6, 6 / y.size ** 0.5), linewidths=0, rasterized=True, zorder=2)
        ax.boxplot(
            [y], positions=[x], widths=0.6, showfliers=False, patch_artist=True, zorder=3,
            boxprops={"facecolor": colour, "alpha": 0.25, "edgecolor": colour},
            medianprops={"color": colour, "linewidth": 2},
            whiskerprops={"color": colour}, capprops={"color": colour},
        )


def plot_dice(cases: "pd.DataFrame", out_prefix: str | Path, metric: str = "dice",
              subtitle: str | None = None, force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: the metric's distribution per loss;
    ``subtitle`` (e.g. where the cases were scored, units and preset) goes under the title."""
    return save_figure(build_dice(cases, metric, subtitle), out_prefix, force)
