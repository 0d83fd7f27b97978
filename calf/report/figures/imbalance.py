"""The training sets' imbalance: tumour-area histograms and where S falls among CALF's branches.

One row per (dataset, ratio). Left: the histogram of tumour area per slice that ``calf
profile`` stores in each profile JSON (``histogram``), one step line per fold on a log count
axis. Right: the skewness axis split into CALF's branch regions (README.md, "The method";
thresholds at -1, -0.5, 0, 0.5 and 1; for 0 < S < 0.5 the kurtosis decides: log10 if K < 0, else
bce_dice), with each fold's S, K and the branch its profile records. The S axis spans at
least [-1.75, 1.75] and widens to the folds' values up to +-4; an S beyond (12 is not rare
when most slices have no tumour) sits at the edge with an arrow and its value. Profiles
written before the histogram existed get the S panel only, and the left panel says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError
from calf.layout import ratio_sort_key, ratio_text
from calf.profile import read_profile
from calf.report.figures._common import (
    BRANCH_COLOURS,
    new_figure,
    note,
    row_label,
    save_figure,
    style,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0)
S_RANGE = (-1.75, 1.75)  # the S axis always shows this much: every threshold and region
S_MAX = 4.0  # and widens to the folds' S up to +-S_MAX; values beyond sit at its edge
# (left, right, label, branch for the colour; None: the K-dependent region)
_REGIONS = (
    (-math.inf, -1.0, "fisher", "fisher"),
    (-1.0, -0.5, "logit", "logit"),
    (-0.5, 0.0, "arcsine", "arcsine"),
    (0.0, 0.5, "K<0: log10\nK≥0: bce_dice", None),
    (0.5, 1.0, "ln", "ln"),
    (1.0, math.inf, "log10", "log10"),
)
# what the figure needs of a profile given as a dict (a JSON path is read and checked by
# calf.profile.read_profile, which also checks any histogram)
_REQUIRED = ("dataset", "fold", "skewness", "kurtosis", "branch")


def load_profiles(profiles: Sequence[Mapping[str, Any] | str | Path]) -> list[dict[str, Any]]:
    """Profile records from dicts or JSON paths, checked; each with ``source`` for errors."""
    records = []
    for i, item in enumerate(profiles):
        if isinstance(item, Mapping):
            record = dict(item)
            source = f"profile {i + 1} ({item.get('dataset')}, fold {item.get('fold')})"
        else:
            source = str(item)
            record = read_profile(item)
        missing = [k for k in _REQUIRED if k not in record]
        if missing:
            raise CalfError(f"{source}: missing key(s) {', '.join(missing)}")
        record["ratio"] = ratio_text(record.get("ratio"))
        record["source"] = source
        records.append(record)
    return records


def build_imbalance(profiles: Sequence[Mapping[str, Any] | str | Path]) -> "Figure":
    """The figure: a row per (dataset, ratio), histogram left, S axis right."""
    records = load_profiles(profiles)
    if not records:
        raise CalfError("no imbalance profiles to plot")
    rows: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        rows.setdefault((str(record["dataset"]), record["ratio"]), []).append(record)
    keys = sorted(rows, key=lambda r: (r[0], ratio_sort_key(r[1])))
    most_folds = max(len(v) for v in rows.values())
    row_height = max(1.9, 0.32 * most_folds + 1.2)

    with style():
        limits = s_limits(records)
        fig = new_figure(10.5, len(keys) * row_height + 0.5)
        axes = fig.subplots(len(keys), 2, squeeze=False, width_ratios=(4, 6))
        for i, key in enumerate(keys):
            folds = sorted(rows[key], key=lambda r: int(r["fold"]))
            label = row_label(*key)
            _draw_histograms(axes[i, 0], folds, label)
            _draw_s_axis(axes[i, 1], folds, label, limits, bottom=i == len(keys) - 1)
        fig.suptitle("Tumour area per training slice, and CALF's branch from its skewness S "
                     "and excess kurtosis K, per fold", fontsize=9)
    return fig


def s_limits(records: Sequence[dict]) -> tuple[float, float]:
    """The S axis's range: S_RANGE, widened to the folds' S (at most to +-S_MAX)."""
    values = [float(r["skewness"]) for r in records
              if r["skewness"] is not None and math.isfinite(float(r["skewness"]))]
    low = min([S_RANGE[0], *(v - 0.3 for v in values)])
    high = max([S_RANGE[1], *(v + 0.3 for v in values)])
    return max(low, -S_MAX), min(high, S_MAX)


def _fold_colour(index: int) -> str:
    return ("#332288", "#117733", "#44aa99", "#88ccee", "#ddcc77", "#cc6677", "#aa4499",
            "#882255")[index % 8]


def _draw_histograms(ax: "Axes", folds: list[dict], label: str) -> None:
    from matplotlib.ticker import LogFormatter

    have = [r for r in folds if r.get("histogram") is not None]
    lacking = [str(r["fold"]) for r in folds if r.get("histogram") is None]
    ax.set_title(f"{label}: tumour area per slice")
    if not have:
        note(ax, "no histogram in these profiles\n(written before calf profile stored it):\n"
                 "S panel only")
        return
    for i, record in enumerate(folds):
        histogram = record.get("histogram")
        if histogram is None:
            continue
        ax.stairs(histogram["counts"], histogram["edges"], color=_fold_colour(i), linewidth=1.0,
                  label=f"fold {record['fold']} ({record.get('n_tumour_slices', '?')}/"
                        f"{record.get('n_slices', '?')} with tumour)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())  # plain 1, 10, 100: no mathtext
    definitions = {r.get("area_definition") for r in have}
    unit = "contour area, pixels" if definitions == {"contour"} else "pixels"
    ax.set_xlabel(f"tumour area per slice ({unit})")
    ax.set_ylabel("slices (log scale)")
    ax.set_xlim(left=0)
    title = f"no histogram: fold {', '.join(lacking)}" if lacking else None
    ax.legend(title=title, loc="upper right", frameon=False, handlelength=1.2)


def _draw_s_axis(
    ax: "Axes", folds: list[dict], label: str, limits: tuple[float, float], bottom: bool
) -> None:
    low, high = limits
    n = len(folds)
    for i, (left, right, text, branch) in enumerate(_REGIONS):
        a, b = max(left, low), min(right, high)
        colour = BRANCH_COLOURS[branch] if branch else "0.85"
        ax.axvspan(a, b, color=colour, alpha=0.18 if branch else 0.5, linewidth=0)
        # the labels in two staggered rows: the narrow regions' labels never overlap
        ax.text((a + b) / 2, n - 0.45 + 0.55 * (i % 2), text, ha="center", va="bottom",
                fontsize=6.5, color="0.15")
    for x in THRESHOLDS:
        ax.axvline(x, color="0.4", linewidth=0.7, linestyle="--")
    for y, record in enumerate(reversed(folds)):
        _mark_fold(ax, y, record, limits)
    ax.set_xlim(low, high)
    ax.set_ylim(-0.7, n + 0.95)
    ax.set_xticks(THRESHOLDS)
    beyond = [v for v in range(math.ceil(low), math.floor(high) + 1) if abs(v) > 1]
    ax.set_xticks(beyond, labels=[str(v) for v in beyond], minor=True)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"fold {r['fold']}" for r in reversed(folds)])
    ax.set_title(f"{label}: skewness S and the CALF branch")
    if bottom:
        ax.set_xlabel("skewness S (0 < S < 0.5: log10 if K < 0, else bce_dice)")


def _mark_fold(ax: "Axes", y: int, record: dict, limits: tuple[float, float]) -> None:
    """Fold ``y``'s S as a point (an arrow at the axis's edge when outside), with its text."""
    low, high = limits
    s, k, branch = record["skewness"], record["kurtosis"], record["branch"]
    if s is None or not math.isfinite(float(s)):
        ax.text(0, y, f"S undefined (all areas equal): {branch}", ha="center", va="center",
                fontsize=7, bbox={"facecolor": "white", "edgecolor": "0.6", "pad": 1.5})
        return
    s = float(s)
    k_text = "undefined" if k is None else f"{float(k):.2f}"
    text = f"S = {s:.2f}, K = {k_text}: {branch}"
    colour = BRANCH_COLOURS.get(branch, "k")
    margin = 0.06
    if s > high - margin or s < low + margin:
        edge = high - margin if s > 0 else low + margin
        ax.plot(edge, y, marker=">" if s > 0 else "<", markersize=7, color=colour,
                markeredgecolor="k", markeredgewidth=0.5)
        ax.text(edge - 0.08 if s > 0 else edge + 0.08, y, f"{text} (off the axis) ",
                ha="right" if s > 0 else "left", va="center", fontsize=7)
        return
    ax.plot(s, y, marker="o", markersize=6, color=colour, markeredgecolor="k",
            markeredgewidth=0.5)
    right = s < (low + high) / 2  # the text goes to the side with more room
    ax.text(s + 0.07 if right else s - 0.07, y, text, ha="left" if right else "right",
            va="center", fontsize=7)


def plot_imbalance(
    profiles: Sequence[Mapping[str, Any] | str | Path], out_prefix: str | Path,
    force: bool = False,
) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: histograms and S per (dataset, ratio) and fold."""
    return save_figure(build_imbalance(profiles), out_prefix, force)
