"""The slice store: one directory per dataset holding every 2-D training sample.

Layout (contract 2 of the data layer; written by ``calf preprocess``):

- ``images.npy``: uint8 ``(N, S, S)``, one min-max scaled [0, 255] axial slice per row.
- ``masks.npy``: uint8 ``(M, S, S)`` of {0, 1}, one binary mask of the chosen region
  (``settings.region``: ``wt`` whole tumour by default, ``tc`` or ``et``) per (case, slice),
  shared by that slice's modalities.
- ``index.parquet``: one row per image slice, row id = position, columns
  ``dataset, case_id, patient_id, modality, slice, area, image_row, mask_row``
  (``area`` = tumour pixels of the mask at training size S, ``slice`` = axial index).
- ``store.json``: format version, settings (among them ``region`` and ``region_labels``,
  label convention -> the mask labels that formed the region), input fingerprint and counts.

Plain ``.npy`` files are memory-mapped, so a random mini-batch reads only its own
rows from disk: no decoding, no per-slice files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
        raise CalfError(
            f"{meta_path}: unknown slice store format {meta.get('format') if isinstance(meta, dict) else None!r}"
            f" (expected {FORMAT_VERSION}); rebuild it with 'calf preprocess'"
        )
    return meta


class SliceStore:
    """Read access to one slice store directory.

    ``index`` is the index table (pandas DataFrame, row id = position), ``images`` and
    ``masks`` are read-only memory maps, ``len(store)`` is the number of image slices,
    and ``batch(rows)`` gathers training tensors for index rows.
    """

    def __init__(self, path: str | Path):
        import numpy as np
        import pandas as pd

        self.path = Path(path)
        self.meta = read_meta(self.path)
        try:
            self.index: pd.DataFrame = pd.read_parquet(self.path / INDEX_FILE)
            self.images: np.memmap = np.load(self.path / IMAGES_FILE, mmap_mode="r")
            self.masks: np.memmap = np.load(self.path / MASKS_FILE, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise CalfError(f"{self.path}: damaged slice store ({err})") from err
        missing = [c for c in INDEX_COLUMNS if c not in self.index.columns]
        if missing:
            raise CalfError(f"{self.path / INDEX_FILE}: missing columns {', '.join(missing)}")
        size = int(self.meta["settings"]["size"])
        for name, arr in ((IMAGES_FILE, self.images), (MASKS_FILE, self.masks)):
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (size, size):
                raise CalfError(
                    f"{self.path / name}: expected uint8 (rows, {size}, {size}), "
                    f"got {arr.dtype} {arr.shape}"
                )
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
        import numpy as np
        import torch

        images, masks = self.arrays(rows)
        # numpy's uint8 -> float32 division is one pass (torch's .to().div_() takes two)
        x = torch.from_numpy(np.divide(images, np.float32(255.0), dtype=np.float32))
        y = torch.from_numpy(masks.astype(np.float32))
        return x.unsqueeze(1), y.unsqueeze(1)
