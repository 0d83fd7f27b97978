"""Qualitative overlays: the evaluate step's best, median and worst test slices, in one grid.

One figure per dataset: a row per loss, and per model three columns (best, median, worst
case by Dice). Each (model, loss) shows its first run variant (lowest ratio, seed, fold:
the same test cases for every loss when all were run), with the tile titled by its case,
slice and Dice from the companion JSON's ``overlays`` block. A PNG or JSON that is not
there makes its tile say "missing" rather than fail the report; a path outside the
metrics layout is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError
from calf.report.figures._common import (
    loss_name,
    loss_order,
    model_name,
    model_order,
    new_figure,
    parse_layout,
    ratio_key,
    save_figure,
    style,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RANKS = ("best", "median", "worst")
_CASE_CHARS = 18  # longer case IDs keep their end (the distinguishing part)


def _variant_key(ident: dict[str, Any]) -> tuple:
    seed = -1 if ident["seed"] is None else ident["seed"]
    return (ratio_key(ident["ratio"]), seed, ident["fold"])


def _variant_text(ident: dict[str, Any]) -> str:
    parts = [] if ident["ratio"] == "natural" else [f"ratio {ident['ratio']}"]
    parts += [] if ident["seed"] is None else [f"seed {ident['seed']}"]
    return ", ".join([*parts, f"fold {ident['fold']}"])


def short_case(case_id: str) -> str:
    text = str(case_id)
    return text if len(text) <= _CASE_CHARS else "…" + text[-(_CASE_CHARS - 1):]


def _tiles(csv: Path) -> dict[str, dict[str, Any]]:
    """Per rank: ``image`` (array, or None when missing) and ``title``."""
    import matplotlib.image

    stem = csv.with_suffix("")
    companion = csv.with_suffix(".json")
    missing = {rank: {"image": None, "title": "missing"} for rank in RANKS}
    if not companion.exists():
        return missing
    try:
        record = json.loads(companion.read_text())
    except (OSError, ValueError) as err:
        raise CalfError(f"{companion}: not a readable metrics JSON ({err})") from None
    if not isinstance(record, dict):
        raise CalfError(f"{companion}: not a JSON object")
    folder = csv.parent / ((record.get("files") or {}).get("overlays") or f"{stem.name}_overlays")
    shown = record.get("overlays") or {}
    tiles = {}
    for rank in RANKS:
        info = shown.get(rank)
        if not isinstance(info, dict):
            tiles[rank] = missing[rank]
            continue
        path = folder / str(info.get("file", f"{rank}.png"))
        try:
            image = matplotlib.image.imread(path)
        except FileNotFoundError:
            image = None
        except (OSError, ValueError, SyntaxError) as err:
            raise CalfError(f"{path}: not a readable PNG ({err})") from None
        dice = info.get("dice")
        dice_text = "n/a" if dice is None else f"{float(dice):.3f}"
        case = short_case(info.get("case_id", "?"))
        title = f"{case}\nslice {info.get('slice', '?')}, Dice {dice_text}"
        tiles[rank] = {"image": image, "title": title if image is not None else f"missing\n{title}"}
    return tiles


def collect_overlays(
    metrics_files: Sequence[str | Path], metrics_root: str | Path | None = None
) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """Per dataset, per (model, loss): the first variant's ``variant`` text and ``tiles``."""
    if not metrics_files:
        raise CalfError("no per-case metrics files given")
    first: dict[tuple[str, str, str], tuple[tuple, dict, Path]] = {}
    studies = set()
    for path in metrics_files:
        ident = parse_layout(path, ".csv", metrics_root)
        studies.add(ident["study"])
        key = (ident["dataset"], ident["model"], ident["loss"])
        if key not in first or _variant_key(ident) < first[key][0]:
            first[key] = (_variant_key(ident), ident, Path(path))
    if len(studies) > 1:
        raise CalfError(f"overlay grids take one study's files, got {', '.join(sorted(studies))}")
    grids: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for (dataset, model, loss), (_, ident, path) in first.items():
        grids.setdefault(dataset, {})[(model, loss)] = {
            "variant": _variant_text(ident), "tiles": _tiles(path)}
    return grids


def build_overlays(entries: dict[tuple[str, str], dict[str, Any]], dataset: str) -> "Figure":
    """One dataset's grid: rows losses, columns model x (best, median, worst)."""
    losses = loss_order({loss for _, loss in entries})
    models = model_order({model for model, _ in entries})
    variants = {e["variant"] for e in entries.values()}
    same = len(variants) == 1
    shapes = [t["image"].shape for e in entries.values() for t in e["tiles"].values()
              if t["image"] is not None]
    aspect = shapes[0][0] / shapes[0][1] if shapes else 1.0
    # a fixed layout in inches (constrained layout costs seconds on a grid of images); a
    # figure capped at MAX_WIDTH x MAX_HEIGHT keeps these proportions
    ncols, nrows = len(models) * len(RANKS), len(losses)
    tile_w, gap_w, title_h, left, top, bottom = 1.6, 0.1, 0.4, 0.35, 0.9, 0.1
    tile_h = tile_w * aspect
    width = left + ncols * tile_w + (ncols - 1) * gap_w + 0.1
    height = top + nrows * (tile_h + title_h) + bottom
    with style():
        fig = new_figure(width, height, constrained=False)
        axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
            "left": left / width, "right": 1 - 0.1 / width, "top": 1 - top / height,
            "bottom": bottom / height, "wspace": gap_w / tile_w, "hspace": title_h / tile_h})
        for i, loss in enumerate(losses):
            for j, model in enumerate(models):
                entry = entries.get((model, loss))
                for r, rank in enumerate(RANKS):
                    ax = axes[i, j * len(RANKS) + r]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                    if i == 0:
                        ax.annotate(f"{model_name(model)}: {rank}", (0.5, 1), xytext=(0, 24),
                                    xycoords="axes fraction", textcoords="offset points",
                                    ha="center", va="bottom", fontsize=9, weight="bold")
                    if j == 0 and r == 0:
                        ax.set_ylabel(loss_name(loss), fontsize=9, weight="bold")
                    tile = None if entry is None else entry["tiles"][rank]
                    if tile is None or tile["image"] is None:
                        ax.text(0.5, 0.5, "missing" if entry else "not run", ha="center",
                                va="center", color="0.35", transform=ax.transAxes)
                        if tile is not None:
                            ax.set_title(tile["title"], fontsize=6.5)
                        continue
                    ax.imshow(tile["image"], interpolation="antialiased")
                    title = tile["title"] if same else f"{tile['title']}\n{entry['variant']}"
                    ax.set_title(title, fontsize=6.5)
        which = f" ({variants.pop()})" if same else " (first variant of each run)"
        fig.suptitle(f"{dataset}: best, median and worst test case by Dice{which}\n"
                     "outlines: truth cyan, prediction red", fontsize=9, y=1 - 0.06 / height)
    return fig


def plot_overlays(
    metrics_files: Sequence[str | Path], out_dir: str | Path, *,
    metrics_root: str | Path | None = None,
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
        written += save_figure(figure, Path(out_dir) / f"overlays_{dataset}")
    return written
