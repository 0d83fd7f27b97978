"""Where CALF helps: its per-patient advantage against tumour size, and against imbalance.

Both figures read the tables of ``calf analyse`` (``results/analysis/<study>/``). The
advantage is CALF's value minus the baseline's when higher is better, the baseline's minus
CALF's when lower is better (HD95): positive always favours CALF.

``build_advantage_volume`` (``patient_advantage.csv``): one panel per model (columns) and
per (dataset, ratio) row, a row per CALF loss when the table holds several; in each, one
point per patient and baseline (one colour per baseline) at the patient's tumour size on a
log axis, and per baseline a LOWESS curve (statsmodels, on log2 size) with the 95% band of
a seeded bootstrap over patients, each resample's curve evaluated on one fixed grid (within
the resample's size range; interpolated between its fitted points). Tumour-free patients
(size 0) have no place on a log axis: they are drawn in a grey strip at the left of each
panel and are not part of the curve. A baseline with fewer than LOWESS_MIN_PATIENTS
tumour-bearing patients (distinct sizes) in a panel gets points only.

``build_imbalance_advantage`` (``imbalance.csv``): per study and CALF loss (rows) and
metric (columns), each group's median advantage against the training set's skewness S, or
against the filter ratio when the study varies it (the x of ``imbalance_trend.csv``); one
marker per model, one colour per baseline, the points labelled by dataset.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from calf.analysis.interaction import trend_x
from calf.defaults import SEED
from calf.errors import CalfError
from calf.layout import NATURAL, ratio_sort_key, ratio_text, ratio_value
from calf.naming import METRIC_NAMES
from calf.report.figures._common import (
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
from calf.stats.collect import GROUP_KEYS, HIGHER_IS_BETTER

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# one colour per baseline (Paul Tol's "muted" scheme, without its red: CALF's colour)
BASELINE_COLOURS = ("#332288", "#117733", "#44aa99", "#88ccee", "#ddcc77", "#aa4499",
                    "#882255", "#999933")
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LOWESS_FRAC = 2 / 3  # the share of the patients each local fit uses
LOWESS_ITERATIONS = 0  # no robustifying iterations (lowess_at says why)
LOWESS_DELTA = 0.01  # of the log2-size range: points closer are interpolated, not refitted
LOWESS_MIN_PATIENTS = 5  # fewer tumour-bearing patients (distinct sizes): points only
RESAMPLES = 200  # bootstrap resamples of the curve's band
BAND_PERCENTILES = (2.5, 97.5)
GRID_POINTS = 60  # where each curve is evaluated, evenly on log2 size
STRIP_DOUBLINGS = 2.0  # the tumour-free strip sits this many doublings left of the smallest
STRIP_HALF_WIDTH = 0.6  # the strip's half-width, in doublings
JITTER = 0.35  # the tumour-free points' spread, in doublings
ADVANTAGE_COLUMNS = (*GROUP_KEYS, "metric", "calf_loss", "baseline", "subject_id", "size",
                     "size_unit", "advantage")
IMBALANCE_COLUMNS = (*GROUP_KEYS, "metric", "calf_loss", "baseline", "skewness",
                     "median_advantage")


def checked_table(table: "pd.DataFrame", name: str, columns: Sequence[str]) -> "pd.DataFrame":
    """A copy of an analysis table with its key columns as text (ratio spelt by
    ``calf.layout.ratio_text``); CalfError naming the table when a column is missing."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CalfError(f"{name}: missing column(s) {', '.join(missing)}")
    table = table.copy()
    for key in ("study", "dataset", "model", "metric", "calf_loss", "baseline", "loss"):
        if key in table.columns:
            table[key] = table[key].astype(str)
    if "ratio" in table.columns:
        table["ratio"] = table["ratio"].map(ratio_text)
    return table


def baseline_colours(baselines) -> dict[str, str]:
    """A fixed colour per baseline, in the suite's loss order."""
    order = loss_order(set(baselines))
    return {b: BASELINE_COLOURS[i % len(BASELINE_COLOURS)] for i, b in enumerate(order)}


def advantage_label(metric: str) -> str:
    """The y axis: what is drawn and its sign (positive favours CALF)."""
    name = METRIC_NAMES.get(metric, metric)
    sign = "CALF - baseline" if HIGHER_IS_BETTER.get(metric, True) else "baseline - CALF"
    unit = "" if HIGHER_IS_BETTER.get(metric, True) else ", mm"
    return f"{name} advantage of CALF\n({sign}{unit}; > 0 favours CALF)"


def lowess_at(x: "np.ndarray", y: "np.ndarray", grid: "np.ndarray") -> "np.ndarray":
    """The LOWESS curve of ``y`` on ``x`` (statsmodels; ``delta`` as its documentation
    suggests, which keeps thousands of patients fast), linearly interpolated at ``grid``
    (inside the range of ``x``). Without the robustifying iterations (``it=0``): the
    figure's Dice differences are bounded in [-1, 1], so there are no wild values for them
    to guard against, and each fit is 3.5 times as fast, which is what makes a band of 200
    resampled curves per baseline affordable at the paper's scale."""
    import numpy as np
    from statsmodels.nonparametric.smoothers_lowess import lowess

    fit = lowess(y, x, frac=LOWESS_FRAC, it=LOWESS_ITERATIONS,
                 delta=LOWESS_DELTA * float(np.ptp(x)))
    return np.interp(grid, fit[:, 0], fit[:, 1])


def lowess_band(x: "np.ndarray", y: "np.ndarray", grid: "np.ndarray", rng,
                resamples: int = RESAMPLES) -> tuple["np.ndarray", ...]:
    """The LOWESS curve of ``y`` on ``x`` at ``grid`` and its bootstrap percentile band
    (patients resampled with replacement; a resample's curve only within its own range)."""
    import numpy as np

    with warnings.catch_warnings():  # degenerate local fits (tied sizes) give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        curve = lowess_at(x, y, grid)
        boots = np.full((resamples, grid.size), np.nan)
        for i in range(resamples):
            rows = rng.integers(0, x.size, x.size)
            xs, ys = x[rows], y[rows]
            if np.unique(xs).size < LOWESS_MIN_PATIENTS:
                continue
            inside = (grid >= xs.min()) & (grid <= xs.max())
            boots[i, inside] = lowess_at(xs, ys, grid[inside])
        low, high = np.nanpercentile(boots, BAND_PERCENTILES, axis=0)
    return curve, low, high


def _advantage_rows(table: "pd.DataFrame") -> list[tuple[str, str, str, str]]:
    """The figure's rows: (study, dataset, ratio, calf_loss), in the suite's order."""
    calf_order = loss_order(table["calf_loss"].unique())
    keys = table[["study", "dataset", "ratio", "calf_loss"]].drop_duplicates()
    return sorted(map(tuple, keys.itertuples(index=False)),
                  key=lambda r: (r[0], r[1], ratio_sort_key(r[2]), calf_order.index(r[3])))


def _size_limits(table: "pd.DataFrame") -> tuple[float, float, float | None]:
    """The x axis (left, right) shared by every panel and the tumour-free strip's centre
    (None when every patient has a tumour)."""

    sizes = table["size"].to_numpy(dtype=float)
    positive = sizes[sizes > 0]
    smallest, largest = (positive.min(), positive.max()) if positive.size else (1.0, 1.0)
    strip = smallest / 2 ** STRIP_DOUBLINGS if (sizes == 0).any() else None
    left = (strip if strip is not None else smallest) / 2 ** (STRIP_HALF_WIDTH + 0.2)
    return left, largest * 2 ** 0.5, strip


def build_advantage_volume(advantages: "pd.DataFrame", metric: str = "dice") -> "Figure":
    """The figure: CALF's per-patient advantage over each baseline against tumour size."""
    import numpy as np

    table = checked_table(advantages, "patient_advantage table", ADVANTAGE_COLUMNS)
    table = table[table["metric"] == metric]
    table = table[np.isfinite(table["size"].to_numpy(dtype=float))
                  & np.isfinite(table["advantage"].to_numpy(dtype=float))]
    if table.empty:
        return message_figure(f"no per-patient advantages of CALF for metric {metric}")
    rows = _advantage_rows(table)
    models = model_order(table["model"].unique())
    colours = baseline_colours(table["baseline"].unique())
    limits = _size_limits(table)
    panels = dict(iter(table.groupby(["study", "dataset", "ratio", "calf_loss", "model"])))
    with style():
        fig = new_figure(len(models) * 4.2 + 0.8, len(rows) * 2.8 + 1.4)
        axes = fig.subplots(len(rows), len(models), squeeze=False)
        for i, row in enumerate(rows):
            for j, model in enumerate(models):
                ax = axes[i, j]
                _advantage_axes(ax, row, model, table, i == 0, j == 0, i == len(rows) - 1)
                part = panels.get((*row, model))
                if part is None:
                    note(ax, "no runs")
                    continue
                _draw_advantage(ax, part, colours, limits, metric)
        _advantage_legend(fig, colours, limits[2] is not None)
        fig.suptitle(f"{advantage_label(metric).splitlines()[0]} per patient against tumour "
                     f"size\npoints = patients (mean over modalities, exams, seeds); curve = "
                     f"LOWESS on log2 size, band = 95% CI ({RESAMPLES} bootstrap resamples "
                     "of patients)", fontsize=9)
    return fig


def _advantage_axes(ax: "Axes", row: tuple, model: str, table: "pd.DataFrame", top: bool,
                    left: bool, bottom: bool) -> None:
    """A panel's titles and labels."""
    study, dataset, ratio, calf_loss = row
    if top:
        ax.set_title(model_name(model), fontsize=9)
    if left:
        label = row_label(dataset, ratio, study if table["study"].nunique() > 1 else None)
        if table["calf_loss"].nunique() > 1:
            label = f"{label}, {loss_name(calf_loss)}"
        metric = str(table["metric"].iloc[0])
        ax.set_ylabel(f"{label}\n{advantage_label(metric)}")
    if bottom:
        unit = ", ".join(sorted(table["size_unit"].dropna().astype(str).unique()))
        ax.set_xlabel(f"tumour size ({unit or 'unknown unit'}, log scale)")


def _draw_advantage(ax: "Axes", part: "pd.DataFrame", colours: dict[str, str],
                    limits: tuple[float, float, float | None], metric: str) -> None:
    """One panel: the strip, the zero line, and per baseline its points and curve."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from calf.stats.run import seeded_generator

    left, right, strip = limits
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # no mathtext
    ax.xaxis.set_minor_formatter(NullFormatter())
    if strip is not None:
        ax.axvspan(strip / 2 ** STRIP_HALF_WIDTH, strip * 2 ** STRIP_HALF_WIDTH, color="0.9",
                   linewidth=0, zorder=0)
        ax.text(strip, 0.98, "no\ntumour", ha="center", va="top", fontsize=6, color="0.35",
                transform=ax.get_xaxis_transform())
    ax.axhline(0, color="0.3", linewidth=0.8, zorder=1)
    for baseline in [b for b in colours if b in set(part["baseline"])]:
        rows = part[part["baseline"] == baseline]
        identity = (*rows.iloc[0][list(GROUP_KEYS)], metric, rows.iloc[0]["calf_loss"],
                    baseline)
        _draw_baseline(ax, rows, colours[baseline], strip, seeded_generator(SEED, identity))
    ax.set_xlim(left, right)
    ax.grid(axis="y", color="0.92", linewidth=0.6)
    patients = part.drop_duplicates(["dataset", "subject_id"])
    free = int((patients["size"].to_numpy(dtype=float) == 0).sum())
    ax.text(0.99, 0.02, f"n = {len(patients)} patients ({free} tumour-free)", ha="right",
            va="bottom", fontsize=6.5, color="0.25", transform=ax.transAxes)


def _draw_baseline(ax: "Axes", rows: "pd.DataFrame", colour: str, strip: float | None,
                   rng) -> None:
    """One baseline's patients as points (tumour-free ones jittered in the strip) and,
    with enough tumour-bearing patients, its LOWESS curve and band."""
    import numpy as np

    size = rows["size"].to_numpy(dtype=float)
    advantage = rows["advantage"].to_numpy(dtype=float)
    free = size == 0
    x = size.copy()
    if strip is not None and free.any():
        x[free] = strip * 2 ** rng.uniform(-JITTER, JITTER, int(free.sum()))
    ax.scatter(x, advantage, s=6, color=colour, alpha=min(0.7, 6 / max(len(x), 1) ** 0.5),
               linewidths=0, rasterized=True, zorder=2)
    log_size, values = np.log2(size[~free]), advantage[~free]
    if np.unique(log_size).size < LOWESS_MIN_PATIENTS:
        return
    grid = np.linspace(log_size.min(), log_size.max(), GRID_POINTS)
    curve, low, high = lowess_band(log_size, values, grid, rng)
    ax.fill_between(2 ** grid, low, high, color=colour, alpha=0.2, linewidth=0, zorder=3)
    ax.plot(2 ** grid, curve, color=colour, linewidth=1.6, zorder=4)


def _advantage_legend(fig: "Figure", colours: dict[str, str], strip: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=c, marker="o", markersize=4, label=f"vs {loss_name(b)}")
               for b, c in colours.items()]
    if strip:
        handles.append(Patch(color="0.9", label="tumour-free patients (size 0; not in the "
                                               "curve)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               title="baseline", handlelength=1.6, columnspacing=1.2)


def plot_advantage_volume(advantages: "pd.DataFrame", out_prefix: str | Path,
                          metric: str = "dice", force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: CALF's advantage per patient by tumour size."""
    return save_figure(build_advantage_volume(advantages, metric), out_prefix, force)


def _imbalance_x(rows: "pd.DataFrame", x: str) -> "pd.Series":
    """Each row's x: its skewness, or its filter ratio; the natural training set of a
    ratio study sits at its measured tumour-slice share (NaN without one)."""
    import pandas as pd

    if x == "skewness":
        return pd.to_numeric(rows["skewness"], errors="coerce")
    ratio = rows["ratio"].map(lambda r: math.nan if r == NATURAL else ratio_value(r))
    measured = (pd.to_numeric(rows["tumour_slice_ratio"], errors="coerce")
                if "tumour_slice_ratio" in rows.columns else pd.Series(math.nan, rows.index))
    return ratio.astype(float).where(rows["ratio"] != NATURAL, measured)


def build_imbalance_advantage(imbalance: "pd.DataFrame") -> "Figure":
    """The figure: each group's median advantage of CALF against its imbalance."""
    import pandas as pd

    table = checked_table(imbalance, "imbalance table", IMBALANCE_COLUMNS)
    parts = [_with_x(rows) for _, rows in table.groupby("study")]
    table = pd.concat(parts) if parts else table.assign(x="", x_value=math.nan)
    table = table[table["x_value"].notna() & table["median_advantage"].notna()]
    if table.empty:
        return message_figure("no median advantages of CALF by imbalance to draw")
    rows = sorted(map(tuple, table[["study", "calf_loss"]].drop_duplicates().to_numpy()),
                  key=lambda r: (r[0], loss_order(table["calf_loss"].unique()).index(r[1])))
    metrics = sorted(table["metric"].unique(), key=_metric_index)
    colours = baseline_colours(table["baseline"].unique())
    markers = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)]
               for i, m in enumerate(model_order(table["model"].unique()))}
    panels = dict(iter(table.groupby(["study", "calf_loss", "metric"])))
    with style():
        fig = new_figure(len(metrics) * 4.4 + 0.6, len(rows) * 3.2 + 1.4)
        axes = fig.subplots(len(rows), len(metrics), squeeze=False)
        for i, (study, calf_loss) in enumerate(rows):
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                name = METRIC_NAMES.get(metric, metric)
                ax.set_title(f"{study}: {loss_name(calf_loss)}, {name}")
                part = panels.get((study, calf_loss, metric))
                if part is None:
                    note(ax, "no groups")
                    continue
                _draw_imbalance(ax, part, colours, markers)
                ax.set_ylabel(advantage_label(metric).replace("advantage", "median advantage",
                                                               1))
        _imbalance_legend(fig, colours, markers, (table["x"] == "ratio").any())
        fig.suptitle("CALF's median advantage per patient against the training set's "
                     "imbalance\n(one point per dataset, model, ratio and baseline; > 0 "
                     "favours CALF)", fontsize=9)
    return fig


def _metric_index(metric: str) -> int:
    names = list(METRIC_NAMES)
    return names.index(metric) if metric in names else len(names)


def _with_x(rows: "pd.DataFrame") -> "pd.DataFrame":
    """A study's rows with ``x`` (the axis it uses) and ``x_value``."""
    x = trend_x(rows["ratio"])
    return rows.assign(x=x, x_value=_imbalance_x(rows, x).to_numpy(dtype=float))


def _draw_imbalance(ax: "Axes", part: "pd.DataFrame", colours: dict[str, str],
                    markers: dict[str, str]) -> None:
    """One panel: a marker per (model, baseline) group, a line per series when x is the
    ratio, the dataset's name above each cluster of points, the zero line."""
    ratio = (part["x"] == "ratio").any()
    for (model, baseline), rows in part.groupby(["model", "baseline"]):
        rows = rows.sort_values("x_value")
        natural = rows["ratio"] == NATURAL
        ax.scatter(rows["x_value"], rows["median_advantage"], marker=markers[model], s=22,
                   facecolors=[("none" if n else colours[baseline]) for n in natural],
                   edgecolors=colours[baseline], linewidths=0.9, zorder=3)
        if ratio:
            for _, series in rows.groupby("dataset"):
                ax.plot(series["x_value"], series["median_advantage"], color=colours[baseline],
                        linewidth=0.6, alpha=0.6, zorder=2)
    for (dataset, x), cluster in part.groupby(["dataset", "x_value"]):
        ax.annotate(dataset, (x, cluster["median_advantage"].max()), xytext=(0, 5),
                    textcoords="offset points", ha="center", fontsize=6, color="0.25")
    ax.axhline(0, color="0.3", linewidth=0.8, zorder=1)
    ax.set_xlabel("filter ratio (share of tumour slices in training)" if ratio
                  else "skewness S of the training set's tumour areas")
    ax.grid(color="0.92", linewidth=0.6)


def _imbalance_legend(fig: "Figure", colours: dict[str, str], markers: dict[str, str],
                      ratio: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=f"vs {loss_name(b)}")
               for b, c in colours.items()]
    handles += [Line2D([], [], color="0.3", marker=m, linestyle="", label=model_name(model))
                for model, m in markers.items()]
    if ratio:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                              linestyle="", label="natural training set (at its measured "
                              "tumour-slice share)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               handlelength=1.2, columnspacing=1.2)


def plot_imbalance_advantage(imbalance: "pd.DataFrame", out_prefix: str | Path,
                             force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: median advantage against S (or the ratio)."""
    return save_figure(build_imbalance_advantage(imbalance), out_prefix, force)


__all__ = ["build_advantage_volume", "build_imbalance_advantage",
           "plot_advantage_volume", "plot_imbalance_advantage"]
