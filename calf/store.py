"""The slice store: one directory per dataset holding every 2-D training sample.

Layout (written by ``calf preprocess``):

- ``images.npy``: uint8 ``(N, S, S)``, one min-max scaled [0, 255] axial slice per row.
- ``masks.npy``: uint8 ``(M, S, S)`` of {0, 1}, one binary mask of the chosen region
  (``settings.region``: ``wt`` whole tumour by default, ``tc`` or ``et``) per (case, slice),
  shared by that slice's modalities.
- ``index.parquet``: one row per image slice, row id = position, columns
  ``dataset, case_id, patient_id, modality, slice, area, image_row, mask_row``
  (``area`` = tumour pixels of the mask at training size S, ``slice`` = axial index);
  ``read_index`` is its one reader.
- ``store.json``: format version, settings (among them ``region`` and ``region_labels``,
  label convention -> the mask labels that formed the region), input fingerprint, counts
  and ``mask_values: [0, 1]``, written once every mask was checked to hold only 0 and 1:
  ``SliceStore`` refuses a store without it, and training, trusting it, builds its loss
  with ``check_target=False`` (no per-step check of the target).
- ``geometry.json``: ``{"format": 1, "cases": {case_id: record}}``, each case's native grid,
  read from its mask's header: ``mask`` (absolute path), ``shape`` (native array shape, a
  4-D singleton dropped), ``spacing`` (header zooms in mm, native axis order), ``affine``
  (4 x 4 voxel -> RAS+ mm), ``orientation`` (``nibabel.io_orientation(affine)``: per native
  axis [RAS axis it became, +1 or -1 for a flip], the transform ``as_closest_canonical``
  applied), ``canonical_shape`` (shape after that transform: (X, Y, Z) of the slices),
  ``label_map`` and ``region_labels`` (the mask labels that formed the binary target).
  Only evaluation on the native grid reads it (``SliceStore.geometry``, lazily); a store
  without it (built before ``calf`` wrote it) is rebuilt by the next ``calf preprocess``.

Plain ``.npy`` files are memory-mapped, so a random mini-batch reads only its own
rows from disk: no decoding, no per-slice files.

A training set (``calf split``'s CSV, columns ``dataset`` and ``row`` pointing into the
stores' indexes) becomes store rows with ``select_rows``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

FORMAT_VERSION = 1
IMAGES_FILE = "images.npy"
MASKS_FILE = "masks.npy"
INDEX_FILE = "index.parquet"
META_FILE = "store.json"
GEOMETRY_FILE = "geometry.json"
GEOMETRY_FORMAT = 1
# store.json ``mask_values``: written by ``calf preprocess`` once it has checked every mask
MASK_VALUES = (0, 1)
INDEX_COLUMNS = (
    "dataset",
    "case_id",
    "patient_id",
    "modality",
    "slice",
    "area",
    "image_row",
    "mask_row",
)
# the text columns of the index (IDs such as "001" stay text)
INDEX_TEXT_COLUMNS = ("dataset", "case_id", "patient_id", "modality")
# columns of a training-set CSV that, when present, must agree with the store index
_CHECKED_COLUMNS = ("case_id", "modality", "slice", "area")


def read_index(path: str | Path) -> "pd.DataFrame":
    """The ``index.parquet`` of the store folder ``path``: the columns ``INDEX_COLUMNS``
    (the text ones as ``str``), one row per image slice, row label = position.

    CalfError naming the file when it is missing, unreadable or lacks a column."""
    import pandas as pd

    index_path = Path(path) / INDEX_FILE
    if not index_path.is_file():
        raise CalfError(f"{index_path}: no slice store index (run 'calf preprocess' first)")
    try:
        index = pd.read_parquet(index_path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise CalfError(f"{index_path}: damaged slice store index "
                        f"({' '.join(str(err).split())})") from None
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise CalfError(f"{index_path}: index lacks column(s) {', '.join(missing)}")
    index = index.reset_index(drop=True)
    for column in INDEX_TEXT_COLUMNS:
        index[column] = index[column].astype(str)
    return index


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``store.json`` of a store directory; CalfError naming the file if unreadable."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise CalfError(f"{path}: not a slice store (no {META_FILE}); run 'calf preprocess' first")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise CalfError(f"{meta_path}: unreadable store metadata ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CalfError(
            f"{meta_path}: unknown slice store format {found!r}"
            f" (expected {FORMAT_VERSION}); rebuild it with 'calf preprocess'"
        )
    return meta


@dataclass(frozen=True)
class CaseGeometry:
    """One case's native grid, as its mask file's header describes it (``geometry.json``).

    ``shape`` and ``spacing`` (mm) are in native array-axis order; ``orientation[i]`` =
    (RAS axis that native axis ``i`` became, +1 or -1 for a flip), nibabel's
    ``io_orientation``; ``canonical_shape`` is (X, Y, Z) after ``as_closest_canonical``.
    """

    mask: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: tuple[tuple[float, float, float, float], ...]
    orientation: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    canonical_shape: tuple[int, int, int]
    label_map: str
    region_labels: tuple[int, ...]

    @property
    def canonical_spacing(self) -> tuple[float, float, float]:
        """Voxel sizes in mm after RAS reorientation: (x, y, z) of the canonical grid."""
        out = [0.0, 0.0, 0.0]
        for axis, (target, _) in enumerate(self.orientation):
            out[target] = self.spacing[axis]
        return out[0], out[1], out[2]

    def training_spacing(self, size: int) -> tuple[float, float, float]:
        """mm per pixel of the ``size x size x Z`` training grid, canonical (x, y, z) order.

        In-plane, one training pixel spans ``X / size`` (``Y / size``) canonical voxels, so
        its size is ``spacing_x * X / size`` (``spacing_y * Y / size``); slices are not
        resampled, so z keeps the canonical slice spacing.
        """
        if size < 1:
            raise CalfError(f"training size must be a positive number of pixels, got {size}")
        sx, sy, sz = self.canonical_spacing
        nx, ny, _ = self.canonical_shape
        return sx * nx / size, sy * ny / size, sz

    def to_record(self) -> dict[str, Any]:
        """The JSON record of ``geometry.json`` (plain lists, the mask path as a string)."""
        return {
            "mask": str(self.mask),
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "affine": [list(row) for row in self.affine],
            "orientation": [list(pair) for pair in self.orientation],
            "canonical_shape": list(self.canonical_shape),
            "label_map": self.label_map,
            "region_labels": list(self.region_labels),
        }

    @classmethod
    def from_record(cls, record: Any, where: str) -> CaseGeometry:
        """Parse and check one ``geometry.json`` record; CalfError naming ``where`` and the
        bad key."""

        def bad(key: str, why: str) -> CalfError:
            return CalfError(f"{where}: {key} {why}; rebuild the store with 'calf preprocess'")

        if not isinstance(record, dict):
            raise bad("record", "is not an object")
        missing = [k for k in _GEOMETRY_KEYS if k not in record]
        if missing:
            raise bad(", ".join(missing), "missing")

        shape = _numbers(record["shape"], 3, "shape", bad, int)
        canonical = _numbers(record["canonical_shape"], 3, "canonical_shape", bad, int)
        spacing = _numbers(record["spacing"], 3, "spacing", bad)
        if not all(n >= 1 for n in shape):
            raise bad("shape", f"must be positive, got {list(shape)}")
        if not all(s > 0 for s in spacing):
            raise CalfError(
                f"{where}: spacing must be positive mm, got {list(spacing)} (the zooms in the "
                f"header of {record['mask']}); fix the header to score on the native grid"
            )
        rows = record["affine"]
        if not isinstance(rows, list) or len(rows) != 4:
            raise bad("affine", f"must be 4 x 4, got {rows!r}")
        affine = tuple(_numbers(rows[i], 4, f"affine row {i}", bad) for i in range(4))
        pairs = record["orientation"]
        if not isinstance(pairs, list) or len(pairs) != 3:
            raise bad("orientation", f"must be 3 [axis, flip] pairs, got {pairs!r}")
        orientation = tuple(_numbers(p, 2, "orientation pair", bad, int) for p in pairs)
        if sorted(a for a, _ in orientation) != [0, 1, 2] or any(
            f not in (-1, 1) for _, f in orientation
        ):
            raise bad("orientation", f"is not an axis permutation with flips +-1, got {pairs!r}")
        expected = [0, 0, 0]
        for axis, (target, _) in enumerate(orientation):
            expected[target] = shape[axis]
        if tuple(expected) != canonical:
            raise bad("canonical_shape", f"{list(canonical)} disagrees with shape and orientation")
        labels = record["region_labels"]
        if not isinstance(labels, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels
        ):
            raise bad("region_labels", f"must be a list of integers, got {labels!r}")
        if not isinstance(record["mask"], str) or not isinstance(record["label_map"], str):
            raise bad("mask, label_map", "must be strings")
        return cls(
            mask=Path(record["mask"]),
            shape=shape,  # type: ignore[arg-type]
            spacing=spacing,  # type: ignore[arg-type]
            affine=affine,  # type: ignore[arg-type]
            orientation=orientation,  # type: ignore[arg-type]
            canonical_shape=canonical,  # type: ignore[arg-type]
            label_map=record["label_map"],
            region_labels=tuple(labels),
        )


_GEOMETRY_KEYS = (
    "mask",
    "shape",
    "spacing",
    "affine",
    "orientation",
    "canonical_shape",
    "label_map",
    "region_labels",
)


def _numbers(value: Any, n: int, key: str, bad: Any, kind: type = float) -> tuple:
    """``value`` as a tuple of ``n`` numbers of ``kind``; ``bad(key, why)`` builds the error."""
    ok = (
        isinstance(value, list)
        and len(value) == n
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) for v in value)
    )
    if ok and kind is int:
        ok = all(float(v).is_integer() for v in value)
    if not ok:
        raise bad(key, f"must be {n} finite numbers, got {value!r}")
    return tuple(kind(v) for v in value)


def read_geometry(path: str | Path) -> dict[str, Any]:
    """The per-case records of a store's ``geometry.json`` (case ID -> raw record)."""
    geometry_path = Path(path) / GEOMETRY_FILE
    if not geometry_path.is_file():
        raise CalfError(
            f"{path}: no {GEOMETRY_FILE} (store built before native-grid evaluation); "
            "rebuild it with 'calf preprocess'"
        )
    try:
        data = json.loads(geometry_path.read_text())
    except (OSError, ValueError) as err:
        raise CalfError(f"{geometry_path}: unreadable geometry ({err})") from err
    if (
        not isinstance(data, dict)
        or data.get("format") != GEOMETRY_FORMAT
        or not isinstance(data.get("cases"), dict)
    ):
        found = data.get("format") if isinstance(data, dict) else None
        raise CalfError(
            f"{geometry_path}: unknown geometry format {found!r} (expected {GEOMETRY_FORMAT}, "
            "with a 'cases' object); rebuild the store with 'calf preprocess'"
        )
    return data["cases"]


class SliceStore:
    """Read access to one slice store directory.

    ``index`` is the index table (pandas DataFrame, row id = position), ``images`` and
    ``masks`` are read-only memory maps, ``len(store)`` is the number of image slices,
    ``batch(rows)`` gathers training tensors for index rows and ``geometry(case_id)`` gives
    a case's native grid (``geometry.json``, read on first use only).
    """

    def __init__(self, path: str | Path):
        import numpy as np

        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.index: pd.DataFrame = read_index(self.path)
        try:
            self.images: np.memmap = np.load(self.path / IMAGES_FILE, mmap_mode="r")
            self.masks: np.memmap = np.load(self.path / MASKS_FILE, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise CalfError(f"{self.path}: damaged slice store ({err})") from err
        size = int(self.meta["settings"]["size"])
        for name, arr in ((IMAGES_FILE, self.images), (MASKS_FILE, self.masks)):
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (size, size):
                raise CalfError(
                    f"{self.path / name}: expected uint8 (rows, {size}, {size}), "
                    f"got {arr.dtype} {arr.shape}"
                )
        if self.meta.get("mask_values") != list(MASK_VALUES):
            # the masks were checked once, when written; a store without the record is
            # refused rather than scanned in full (gigabytes, in every job and worker)
            raise CalfError(
                f"{self.path / META_FILE}: no mask_values [0, 1] (store written before calf "
                "recorded its mask check); rebuild it: 'calf preprocess' with the same "
                "arguments rebuilds such a store"
            )
        self._geometry: dict[str, Any] | None = None  # geometry.json, loaded on first use
        # plain arrays for the hot path: no pandas lookups per batch
        self._image_rows = self.index["image_row"].to_numpy(dtype=np.int64)
        self._mask_rows = self.index["mask_row"].to_numpy(dtype=np.int64)
        if len(self.index) and (
            self._image_rows.max() >= len(self.images) or self._mask_rows.max() >= len(self.masks)
        ):
            raise CalfError(f"{self.path / INDEX_FILE}: rows point past the end of the arrays")

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"SliceStore({str(self.path)!r}, slices={len(self)}, size={self.size})"

    @property
    def dataset(self) -> str:
        return str(self.meta["settings"]["dataset"])

    @property
    def size(self) -> int:
        return int(self.meta["settings"]["size"])

    def geometry(self, case_id: str) -> CaseGeometry:
        """The native grid of one case; CalfError naming the store and the case when it has
        none, and asking for a rebuild when the store has no ``geometry.json``."""
        if self._geometry is None:
            self._geometry = read_geometry(self.path)
        record = self._geometry.get(str(case_id))
        if record is None:
            raise CalfError(
                f"{self.path / GEOMETRY_FILE}: no geometry for case {case_id!r} "
                f"(the store has {len(self._geometry)} cases)"
            )
        return CaseGeometry.from_record(record, f"{self.path / GEOMETRY_FILE} case {case_id!r}")

    def areas(self) -> "np.ndarray":
        """Tumour pixel area of every image slice at training size, in index order."""
        return self.index["area"].to_numpy()

    def arrays(self, rows: Sequence[int] | "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
        """uint8 images and masks ``(B, S, S)`` of the given index rows, in that order."""
        import numpy as np

        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        if r.size and (r.min() < 0 or r.max() >= len(self)):
            raise IndexError(f"row out of range for a store of {len(self)} slices")
        images = np.asarray(np.take(self.images, self._image_rows[r], axis=0))
        masks = np.asarray(np.take(self.masks, self._mask_rows[r], axis=0))
        return images, masks

    def batch(self, rows: Sequence[int] | "np.ndarray") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Training tensors of the given index rows.

        Returns float32 images ``(B, 1, S, S)`` scaled to [0, 1] (uint8 / 255) and float32
        {0, 1} masks ``(B, 1, S, S)``, both on the CPU.
        """
        import torch

        images, masks = self.arrays(rows)
        return training_tensors(torch.from_numpy(images), torch.from_numpy(masks))


def training_tensors(
    images: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The store's uint8 images and masks, ``(B, S, S)`` or ``(B, 1, S, S)``, as training
    tensors on their own device: float32 images / 255 and float32 {0, 1} masks
    ``(B, 1, S, S)``. The training loader ships uint8 from its workers (a quarter of the
    bytes) and converts here, where the batch arrives."""
    import torch

    if images.ndim == 3:
        images, masks = images.unsqueeze(1), masks.unsqueeze(1)
    # uint8 -> float32, then an in-place divide: the fastest of torch's and numpy's ways
    # (torch.div on uint8 is 20x slower), correctly rounded like numpy's float32 divide
    return images.to(torch.float32).div_(255.0), masks.to(torch.float32)


# ------------------------------------------------------------------ training sets


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
