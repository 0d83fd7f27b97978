"""Imbalance profile of a training set: S, K and the CALF branch of its slice areas.

The training set is either a training-set CSV (the slices one training run uses, columns
``dataset`` and ``row`` pointing into the slice stores' indexes) or, without one, every
slice of the given stores. Areas come straight from the store index (``pixels``: tumour
pixels at training size, no image decoding) or from the authors' OpenCV polygon areas of
the stored masks (``contour``). ``n_tumour_slices`` counts slices with any tumour pixel in
both cases. Undefined statistics (all areas equal) are written as JSON ``null`` and select
``bce_dice``. The record carries the areas' histogram (``HISTOGRAM_BINS`` bins over
``[0, max area]``) so that the report can draw every fold's distribution from the JSONs alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError

if TYPE_CHECKING:
    import numpy as np

    from calf.store import SliceStore

# columns of a training-set CSV that, when present, must agree with the store index
_CHECKED_COLUMNS = ("case_id", "modality", "slice", "area")
_CONTOUR_CHUNK = 1024  # masks per OpenCV pass: bounds memory on large stores
HISTOGRAM_BINS = 50


@dataclass(frozen=True)
class Selection:
    """Rows of one store that belong to the training set."""

    store: "SliceStore"
    rows: "np.ndarray"


def select_rows(stores: Sequence["SliceStore"], train_slices: str | Path | None) -> list[Selection]:
    """The training set's rows per store: all rows, or those a training-set CSV names.

    Rows of the CSV are checked against the store index (``case_id``, ``modality``,
    ``slice``, ``area`` where the CSV has them), so a CSV made from another build of a
    store is an error rather than a silently wrong profile.
    """
    import numpy as np
    import pandas as pd

    by_name: dict[str, SliceStore] = {}
    for store in stores:
        if store.dataset in by_name:
            raise CalfError(
                f"{store.path}: dataset {store.dataset!r} also in {by_name[store.dataset].path}"
            )
        by_name[store.dataset] = store
    if train_slices is None:
        return [Selection(s, np.arange(len(s), dtype=np.int64)) for s in stores]

    path = Path(train_slices)
    try:
        # every cell as text: case IDs such as "001" must not turn into numbers
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as err:
        raise CalfError(f"{path}: training-set file not found") from err
    except (OSError, ValueError) as err:
        raise CalfError(f"{path}: unreadable CSV ({' '.join(str(err).split())})") from err
    missing = [c for c in ("dataset", "row") if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing columns {', '.join(missing)}")
    if table.empty:
        raise CalfError(f"{path}: the training set has no slices")
    rows = pd.to_numeric(table["row"], errors="coerce")
    if rows.isna().any() or (rows % 1 != 0).any():
        bad = table["row"][rows.isna() | (rows % 1 != 0)].iloc[0]
        raise CalfError(f"{path}: column row holds {bad!r}, not a row number")
    table = table.assign(row=rows.astype(np.int64), dataset=table["dataset"].astype(str))

    selections = []
    for name, part in table.groupby("dataset", sort=True):
        store = by_name.get(name)
        if store is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise CalfError(f"{path}: dataset {name!r} has no --store (stores given: {known})")
        r = part["row"].to_numpy()
        if r.min() < 0 or r.max() >= len(store):
            bad = int(r[(r < 0) | (r >= len(store))][0])
            raise CalfError(
                f"{path}: row {bad} of {name} outside {store.path} ({len(store)} slices)"
            )
        index = store.index.iloc[r]
        for column in _CHECKED_COLUMNS:
            if column not in part.columns:
                continue
            mine = part[column].to_numpy()
            theirs = index[column].to_numpy()
            if column in ("slice", "area"):
                differs = pd.to_numeric(part[column], errors="coerce").to_numpy() != theirs
            else:
                differs = mine.astype(str) != theirs.astype(str)
            if differs.any():
                k = int(np.flatnonzero(differs)[0])
                raise CalfError(
                    f"{path}: {name} row {int(r[k])} has {column}={mine[k]} but "
                    f"{store.path} has {theirs[k]}; was the store rebuilt after the split?"
                )
        selections.append(Selection(store, r))
    return selections


def contour_areas_of(store: "SliceStore", rows: "np.ndarray") -> "np.ndarray":
    """The authors' OpenCV polygon area of each row's mask (computed once per mask)."""
    import numpy as np
    import torch

    from calf.imbalance import contour_areas

    mask_rows = store.index["mask_row"].to_numpy()[rows]
    unique, inverse = np.unique(mask_rows, return_inverse=True)
    out = np.empty(unique.size, dtype=np.float64)
    for start in range(0, unique.size, _CONTOUR_CHUNK):
        chunk = unique[start : start + _CONTOUR_CHUNK]
        masks = torch.from_numpy(np.asarray(store.masks[chunk]))
        out[start : start + chunk.size] = contour_areas(masks).numpy()
    return out[inverse.reshape(-1)]


def gather_areas(selections: Sequence[Selection], area: str) -> tuple["np.ndarray", "np.ndarray"]:
    """(areas by the chosen definition, pixel areas) of every selected slice."""
    import numpy as np

    if area not in ("pixels", "contour"):
        raise CalfError(f"area definition must be pixels or contour, got {area!r}")
    pixels = [s.store.index["area"].to_numpy()[s.rows] for s in selections]
    pixel_areas = np.concatenate(pixels) if pixels else np.zeros(0, dtype=np.int64)
    if area == "pixels":
        return pixel_areas.astype(np.float64), pixel_areas
    chosen = np.concatenate([contour_areas_of(s.store, s.rows) for s in selections])
    return chosen, pixel_areas


def area_histogram(areas: "np.ndarray") -> dict[str, list]:
    """``{"edges": [51 floats], "counts": [50 ints]}``: equal bins over ``[0, max area]``.

    The range is at least ``[0, 1]`` so that a training set without tumour still has bins.
    """
    import numpy as np

    top = float(areas.max()) if areas.size else 0.0
    counts, edges = np.histogram(areas, bins=HISTOGRAM_BINS, range=(0.0, max(top, 1.0)))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def build_profile(
    areas: "np.ndarray", pixel_areas: "np.ndarray", area: str, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The profile record (DESIGN.md contract) of one training set's areas."""
    import numpy as np

    from calf.imbalance import imbalance_stats
    from calf.losses import select_branch

    if areas.size == 0:
        raise CalfError("the training set has no slices")
    stats = imbalance_stats(areas)

    def number(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    n_tumour = int(np.count_nonzero(pixel_areas))
    record: dict[str, Any] = {
        "n_slices": int(areas.size),
        "n_tumour_slices": n_tumour,
        "tumour_fraction": n_tumour / int(areas.size),
        "skewness": number(stats.skewness),
        "kurtosis": number(stats.kurtosis),
        "branch": select_branch(stats.skewness, stats.kurtosis),
        "area_definition": area,
        "histogram": area_histogram(areas),
    }
    record.update({k: v for k, v in (context or {}).items() if v is not None})
    return record


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def render_histogram(record: dict[str, Any], path: Path) -> None:
    """The record's histogram (log count axis) with S, K and the branch written on it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    ax = fig.add_subplot()
    histogram = record["histogram"]
    ax.stairs(histogram["counts"], histogram["edges"], fill=True, color="#4477aa")
    ax.set_yscale("log")
    unit = "pixels" if record["area_definition"] == "pixels" else "contour area, pixels"
    ax.set_xlabel(f"tumour area per slice ({unit})")
    ax.set_ylabel("slices")
    parts = [str(record["dataset"])] if "dataset" in record else []
    parts += [f"{k} {record[k]}" for k in ("fold", "ratio") if k in record]
    ax.set_title("imbalance profile" + (": " + ", ".join(parts) if parts else ""))
    text = (
        f"S = {_fmt(record['skewness'])}\nK = {_fmt(record['kurtosis'])}\n"
        f"branch: {record['branch']}\n"
        f"{record['n_tumour_slices']} of {record['n_slices']} slices with tumour"
    )
    ax.text(
        0.97,
        0.95,
        text,
        transform=ax.transAxes,
        ha="right",
        va="top",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
    )
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)  # tight_layout: 2x slower
    fig.savefig(path, format="png")


def _temp_next_to(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_outputs(
    record: dict[str, Any], out: str | Path, figure: str | Path | None = None
) -> None:
    """Write the JSON (and the figure) atomically: temp files beside them, then rename."""
    targets = [(Path(out), "json")] + ([(Path(figure), "png")] if figure is not None else [])
    temps: list[Path] = []
    try:
        for target, kind in targets:
            if target.is_dir():
                raise CalfError(f"{target}: is a directory, expected a file path")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_next_to(target)
            temps.append(tmp)
            if kind == "json":
                tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
            else:
                render_histogram(record, tmp)
        for (target, _), tmp in zip(targets, temps):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def profile(
    stores: Sequence[str | Path],
    out: str | Path,
    train_slices: str | Path | None = None,
    area: str = "pixels",
    figure: str | Path | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Profile a training set, write the JSON (and figure), return the record."""
    from calf.store import SliceStore

    if not stores:
        raise CalfError("give at least one slice store")
    opened = [SliceStore(p) for p in stores]
    selections = select_rows(opened, train_slices)
    areas, pixel_areas = gather_areas(selections, area)
    full_context = dict(context or {})
    full_context["stores"] = [str(s.path) for s in opened]
    full_context["train_slices"] = None if train_slices is None else str(train_slices)
    record = build_profile(areas, pixel_areas, area, full_context)
    write_outputs(record, out, figure)
    return record
