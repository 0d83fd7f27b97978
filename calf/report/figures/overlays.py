"""Qualitative overlays: the evaluate step's best, median and worst test slices, in one grid.

One figure per dataset: a row per loss, and per model three columns (best, median, worst
case by Dice). Each (model, loss) shows its first run variant (lowest ratio, seed, fold:
the same test cases for every loss when all were run). Each tile is drawn from the arrays
of its slice (the ``.npz`` that the companion JSON's ``overlays`` block names beside its
PNG) with the same ``calf.evaluate.overlays.draw_overlay`` as the per-run PNGs, and carries
one line: case, slice and Dice; the figure has one legend for the outlines. An ``.npz`` or
JSON that is not there makes its tile say "missing" rather than fail the report (the PNGs
are not read); a path outside the metrics layout is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError
from calf.evaluate.companion import read_companion
from calf.layout import NATURAL, RunKey, ratio_sort_key
from calf.report.figures._common import (
    loss_name,
    loss_order,
    model_name,
    model_order,
    new_figure,
    note,
    save_figure,
    style,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RANKS = ("best", "median", "worst")
TILE_FONT = 6  # points: one tile's title line
_CASE_CHARS = 18  # longer case IDs keep their end (the distinguishing part)


def _variant_order(key: RunKey) -> tuple:
    """The natural ratio first, then ratios ascending; then seed, then fold."""
    return (ratio_sort_key(key.ratio), -1 if key.seed is None else key.seed, key.fold)


def _variant_title(key: RunKey) -> str:
    """The variant in words: "ratio 0.25, seed 1, fold 0"."""
    parts = [] if key.ratio == NATURAL else [f"ratio {key.ratio}"]
    parts += [] if key.seed is None else [f"seed {key.seed}"]
    return ", ".join([*parts, f"fold {key.fold}"])


def short_case(case_id: str) -> str:
    text = str(case_id)
    return text if len(text) <= _CASE_CHARS else "…" + text[-(_CASE_CHARS - 1):]


def tile_title(info: dict[str, Any]) -> str:
    """The one line over a tile: short case, slice and Dice of an ``overlays`` entry."""
    dice = info.get("dice")
    dice_text = "n/a" if dice is None else f"{float(dice):.2f}"
    case = short_case(info.get("case_id", "?"))
    return f"{case} · z {info.get('slice', '?')} · Dice {dice_text}"


def _tiles(csv: Path) -> dict[str, dict[str, Any]]:
    """Per rank: ``arrays`` (image, truth, pred; None when missing) and ``title`` (None:
    nothing known of the tile)."""
    from calf.evaluate.overlays import read_overlay_arrays

    stem = csv.with_suffix("")
    missing = {rank: {"arrays": None, "title": None} for rank in RANKS}
    record = read_companion(csv, missing_ok=True)
    if not record:
        return missing
    folder = csv.parent / ((record.get("files") or {}).get("overlays") or f"{stem.name}_overlays")
    shown = record.get("overlays") or {}
    tiles = {}
    for rank in RANKS:
        info = shown.get(rank)
        if not isinstance(info, dict):
            tiles[rank] = missing[rank]
            continue
        try:  # an older result without "arrays" has no .npz: its tile says missing
            arrays = read_overlay_arrays(folder / str(info.get("arrays", f"{rank}.npz")))
        except FileNotFoundError:
            arrays = None
        tiles[rank] = {"arrays": arrays, "title": tile_title(info)}
    return tiles


def collect_overlays(
    metrics_files: Sequence[str | Path], metrics_root: str | Path | None = None
) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """Per dataset, per (model, loss): the first variant's ``variant`` text and ``tiles``."""
    if not metrics_files:
        raise CalfError("no per-case metrics files given")
    first: dict[tuple[str, str, str], tuple[tuple, RunKey, Path]] = {}
    studies = set()
    for path in metrics_files:
        run = RunKey.from_path(path, ".csv", metrics_root)
        studies.add(run.study)
        key = (run.dataset, run.model, run.loss)
        if key not in first or _variant_order(run) < first[key][0]:
            first[key] = (_variant_order(run), run, Path(path))
    if len(studies) > 1:
        raise CalfError(f"overlay grids take one study's files, got {', '.join(sorted(studies))}")
    grids: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for (dataset, model, loss), (_, run, path) in first.items():
        grids.setdefault(dataset, {})[(model, loss)] = {
            "variant": _variant_title(run), "tiles": _tiles(path)}
    return grids


def build_overlays(entries: dict[tuple[str, str], dict[str, Any]], dataset: str) -> "Figure":
    """One dataset's grid: rows losses, columns model x (best, median, worst)."""
    from calf.evaluate.overlays import draw_overlay, legend_handles

    losses = loss_order({loss for _, loss in entries})
    models = model_order({model for model, _ in entries})
    variants = {e["variant"] for e in entries.values()}
    same = len(variants) == 1
    shapes = [t["arrays"][0].shape for e in entries.values() for t in e["tiles"].values()
              if t["arrays"] is not None]
    aspect = shapes[0][1] / shapes[0][0] if shapes else 1.0  # drawn transposed
    # a fixed layout in inches (constrained layout costs seconds on a grid of images), the
    # tile wide enough for its one-line title at TILE_FONT; top: the title, the legend and
    # the column headers
    ncols, nrows = len(models) * len(RANKS), len(losses)
    tile_w, gap_w, title_h, left, right, top, bottom = 1.9, 0.1, 0.22, 0.3, 0.1, 0.95, 0.1
    tile_h = tile_w * aspect
    width = left + ncols * tile_w + (ncols - 1) * gap_w + right
    height = top + nrows * (tile_h + title_h) + bottom
    with style():
        fig = new_figure(width, height, constrained=False)
        axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
            "left": left / width, "right": 1 - right / width, "top": 1 - top / height,
            "bottom": bottom / height, "wspace": gap_w / tile_w, "hspace": title_h / tile_h})
        for i, loss in enumerate(losses):
            for j, model in enumerate(models):
                entry = entries.get((model, loss))
                for r, rank in enumerate(RANKS):
                    ax = axes[i, j * len(RANKS) + r]
                    if i == 0:
                        ax.annotate(f"{model_name(model)}: {rank}", (0.5, 1), xytext=(0, 13),
                                    xycoords="axes fraction", textcoords="offset points",
                                    ha="center", va="bottom", fontsize=8, weight="bold")
                    if j == 0 and r == 0:
                        ax.set_ylabel(loss_name(loss), fontsize=8, weight="bold", labelpad=3)
                    tile = None if entry is None else entry["tiles"][rank]
                    if tile is not None and tile["title"] is not None:
                        ax.set_title(tile["title"], fontsize=TILE_FONT, pad=3)
                    if tile is None or tile["arrays"] is None:
                        note(ax, "missing" if entry else "not run")
                        for spine in ax.spines.values():
                            spine.set_visible(False)
                        continue
                    draw_overlay(ax, *tile["arrays"], linewidth=0.8)
                    if not same and r == 0:  # the variant of this (model, loss), in the tile
                        ax.text(0.03, 0.03, entry["variant"], transform=ax.transAxes,
                                fontsize=TILE_FONT, color="white", ha="left", va="bottom",
                                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1,
                                      "linewidth": 0})
        which = f" ({variants.pop()})" if same else " (first variant of each run)"
        fig.suptitle(f"{dataset}: best, median and worst test case by Dice{which}",
                     fontsize=9, y=1 - 0.08 / height, va="top")
        fig.legend(handles=legend_handles(), loc="upper center", ncol=2, frameon=False,
                   fontsize=7, bbox_to_anchor=(0.5, 1 - 0.3 / height))
    return fig


def plot_overlays(
    metrics_files: Sequence[str | Path], out_dir: str | Path, *,
    metrics_root: str | Path | None = None, force: bool = False,
) -> list[Path]:
    """Write ``{out_dir}/overlays_{dataset}.png`` and ``.svg`` per dataset; return the paths.

    ``metrics_files``: one study's per-case CSVs
    ``.../<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK.csv`` (below
    ``metrics_root`` when given, which then checks the whole layout).
    """
    grids = collect_overlays(metrics_files, metrics_root)
    written: list[Path] = []
    for dataset in sorted(grids):
        figure = build_overlays(grids[dataset], dataset)
        written += save_figure(figure, Path(out_dir) / f"overlays_{dataset}", force)
    return written
