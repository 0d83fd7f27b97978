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

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf._fs import atomic_files, check_writable, json_text
from calf._json import read_json_object
from calf.errors import CalfError
from calf.store import Selection, SliceStore, select_rows

if TYPE_CHECKING:
    import numpy as np

_CONTOUR_CHUNK = 1024  # masks per OpenCV pass: bounds memory on large stores
HISTOGRAM_BINS = 50
AREA_DEFINITIONS = ("pixels", "contour")
# the keys every profile record holds (``build_profile``), checked by ``read_profile``
PROFILE_KEYS = ("n_slices", "n_tumour_slices", "skewness", "kurtosis", "branch",
                "area_definition")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_profile(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """The imbalance profile JSON at ``path`` (written by ``calf profile``), checked.

    Every key of ``PROFILE_KEYS`` must be there: counts as whole numbers, ``skewness`` and
    ``kurtosis`` numbers or null (undefined), ``branch`` a text, ``area_definition`` one of
    ``AREA_DEFINITIONS``; a ``histogram``, when present, numeric ``edges`` one longer than
    ``counts``. Other keys (the training set's context) are returned as they are.
    ``name`` is how errors call the file (default its path, e.g. ``--profile x.json``);
    every error is one CalfError line that names it."""
    name = str(path) if name is None else name
    record = read_json_object(path, "profile", name=name)
    for key in PROFILE_KEYS:
        if key not in record:
            raise CalfError(f"{name}: missing key {key!r}")
    for key in ("n_slices", "n_tumour_slices"):
        if not _is_count(record[key]):
            raise CalfError(f"{name}: {key} is {record[key]!r}, not a count of slices")
    if record["n_tumour_slices"] > record["n_slices"]:
        raise CalfError(f"{name}: n_tumour_slices {record['n_tumour_slices']} exceeds "
                        f"n_slices {record['n_slices']}")
    for key in ("skewness", "kurtosis"):
        if record[key] is not None and not _is_number(record[key]):
            raise CalfError(f"{name}: {key} is {record[key]!r}, not a number or null")
    if not isinstance(record["branch"], str):
        raise CalfError(f"{name}: branch is {record['branch']!r}, not a branch name")
    if record["area_definition"] not in AREA_DEFINITIONS:
        raise CalfError(f"{name}: area_definition is {record['area_definition']!r}, "
                        f"expected {' or '.join(AREA_DEFINITIONS)}")
    if record.get("histogram") is not None:
        _check_histogram(record["histogram"], name)
    return record


def _check_histogram(histogram: Any, name: str) -> None:
    try:
        edges = [float(x) for x in histogram["edges"]]
        counts = [float(x) for x in histogram["counts"]]
    except (TypeError, KeyError, ValueError):
        raise CalfError(f"{name}: histogram needs numeric lists edges and counts") from None
    if len(edges) != len(counts) + 1 or not counts:
        raise CalfError(
            f"{name}: histogram has {len(edges)} edges for {len(counts)} counts (need one more)"
        )


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

    if area not in AREA_DEFINITIONS:
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
    """The profile record of one training set's areas: ``PROFILE_KEYS``, the tumour
    fraction, the histogram and the ``context`` (dataset, fold, ratio, ...)."""
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


def write_outputs(
    record: dict[str, Any], out: str | Path, figure: str | Path | None = None,
    force: bool = False,
) -> None:
    """Write the JSON (and the figure) atomically, both or neither; an existing file is
    replaced only with ``force``."""
    paths = [out] + ([figure] if figure is not None else [])
    with atomic_files(paths, force=force) as temps:
        temps[0].write_text(json_text(record))
        if figure is not None:
            render_histogram(record, temps[1])


def profile(
    stores: Sequence[str | Path],
    out: str | Path,
    train_slices: str | Path | None = None,
    area: str = "pixels",
    figure: str | Path | None = None,
    context: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Profile a training set, write the JSON (and figure), return the record. An existing
    output file is replaced only with ``force``."""
    if not stores:
        raise CalfError("give at least one slice store")
    for path in [out] + ([figure] if figure is not None else []):
        check_writable(path, force)  # before the work, not after it
    opened = [SliceStore(p) for p in stores]
    selections = select_rows(opened, train_slices)
    areas, pixel_areas = gather_areas(selections, area)
    full_context = dict(context or {})
    full_context["stores"] = [str(s.path) for s in opened]
    full_context["train_slices"] = None if train_slices is None else str(train_slices)
    record = build_profile(areas, pixel_areas, area, full_context)
    write_outputs(record, out, figure, force)
    return record
