"""Turn a cohort's NIfTI volumes into one slice store (see ``calf.store`` for the layout).

Per case: every volume is reoriented to RAS with ``nibabel.as_closest_canonical``; each
axial slice (the last array axis) of each modality becomes one sample, tumour-free slices
included. Intensities are min-max scaled to [0, 255] per volume or per slice (a constant
volume or slice maps to 0), resized to ``size x size`` with bilinear interpolation
(``torch.nn.functional.interpolate``) and rounded to uint8. The mask becomes the binary
target region (``wt``, ``tc`` or ``et``: the labels ``calf.datasets.regions`` gives for the
case's label convention; BraTS 2024's resection cavity is in none) and is resized either
the authors' way (bilinear, then > 0) or with nearest-neighbour (torch's ``nearest-exact``);
one mask per (case, slice) is shared by the slice's modalities. Slices keep nibabel's
in-plane order: array row = R-L axis (x), column = P-A axis (y).

Cases run in parallel worker processes, each returning one case's arrays; the parent writes
them into preallocated memory-mapped ``.npy`` files inside a staging folder beside ``<out>``
that takes its place when finished (``calf._fs.atomic_dir``: an older store there is removed
only then), so a failure leaves nothing behind and the old store intact. An input fingerprint
(paths, sizes, mtimes) plus the settings, kept in ``store.json``, make a re-run on
unchanged input a no-op.

Each case's native grid (``geometry.json``: mask path, shape, header zooms in mm, affine,
the ``io_orientation`` that ``as_closest_canonical`` applied, labels of the target) is read
from the mask's header while planning, with no extra decoding, so that evaluation can bring
predictions back to the original grid (``calf.evaluate.native``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf._fs import atomic_dir, json_text
from calf.datasets.base import MODALITIES, Case
from calf.datasets.regions import REGIONS, region_labels
from calf.errors import CalfError
from calf.store import (
    FORMAT_VERSION,
    GEOMETRY_FILE,
    GEOMETRY_FORMAT,
    IMAGES_FILE,
    INDEX_FILE,
    MASK_VALUES,
    MASKS_FILE,
    META_FILE,
    CaseGeometry,
    read_meta,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

SCALINGS = ("volume", "slice")
MASK_RESIZES = ("bilinear", "nearest")
# bump when the arithmetic or the store's files change, so that stores built by older code
# are rebuilt (2: geometry.json)
ALGORITHM_VERSION = 2


@dataclass(frozen=True)
class PreprocessSettings:
    """What decides a store's content besides its input files."""

    size: int = 256
    scaling: str = "volume"
    mask_resize: str = "bilinear"
    # modalities that become samples, in this order; None: every modality the cases have
    modalities: tuple[str, ...] | None = None
    # the adapter options the cases were discovered with (recorded, part of the identity)
    options: dict[str, str] = field(default_factory=dict)
    # the binary target: whole tumour, tumour core or enhancing tumour
    region: str = "wt"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise CalfError(f"size must be a positive number of pixels, got {self.size}")
        if self.scaling not in SCALINGS:
            raise CalfError(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if self.mask_resize not in MASK_RESIZES:
            raise CalfError(
                f"mask_resize must be one of {', '.join(MASK_RESIZES)}, got {self.mask_resize!r}"
            )
        if self.region not in REGIONS:
            raise CalfError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")


@dataclass(frozen=True)
class StoreSummary:
    """Outcome of ``preprocess``: where the store is, whether it was (re)built, its size."""

    path: Path
    built: bool
    n_cases: int
    n_images: int
    n_masks: int


@dataclass
class CaseArrays:
    """One case's samples: uint8 images per modality ``(Z, S, S)``, its mask and areas."""

    images: dict[str, "np.ndarray"]
    mask: "np.ndarray"
    areas: "np.ndarray"


# ---------------------------------------------------------------- reading and checking


def _load(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError as err:
        raise CalfError(f"{path}: file not found") from err
    except Exception as err:  # nibabel raises many types for a bad header
        raise CalfError(f"{path}: not a readable NIfTI file ({_reason(err)})") from err


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]


def header_geometry(
    path: Path, label_map: str = "any", labels: Sequence[int] = ()
) -> CaseGeometry:
    """The native grid of a NIfTI volume from its header alone (no decoding): shape (a 4-D
    singleton dropped), zooms in mm, affine, ``io_orientation`` and the RAS shape.
    ``label_map`` and ``labels`` (the target's mask labels) are recorded as given."""
    import nibabel as nib

    img = _load(path)
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise CalfError(f"{path}: expected a 3-D volume, got shape {shape}")
    # recorded as they are: a header with zero zooms still trains, and only the
    # native-grid evaluation, which needs mm, refuses it (CaseGeometry.from_record)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    affine = img.affine
    ornt = nib.io_orientation(affine)
    canonical = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        canonical[int(target)] = shape[axis]
    return CaseGeometry(
        mask=Path(os.path.abspath(path)),
        shape=shape,  # type: ignore[arg-type]
        spacing=zooms,  # type: ignore[arg-type]
        affine=tuple(tuple(float(v) for v in row) for row in affine),
        orientation=tuple((int(t), int(f)) for t, f in ornt),  # type: ignore[arg-type]
        canonical_shape=tuple(canonical),  # type: ignore[arg-type]
        label_map=label_map,
        region_labels=tuple(int(v) for v in labels),
    )


def canonical_shape(path: Path) -> tuple[int, int, int]:
    """Shape of the volume after RAS reorientation, from its header alone (no decoding)."""
    return header_geometry(path).canonical_shape


def read_canonical(path: Path) -> "np.ndarray":
    """The voxel array of a NIfTI volume reoriented to RAS (3-D, raw dtype after scaling)."""
    import nibabel as nib
    import numpy as np
    from nibabel.filebasedimages import ImageFileError

    img = _load(path)
    try:
        data = np.asanyarray(nib.as_closest_canonical(img).dataobj)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as err:
        raise CalfError(f"{path}: cannot decode NIfTI data ({_reason(err)})") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise CalfError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return data


def _check_finite(data: "np.ndarray", path: Path) -> None:
    import numpy as np

    if data.dtype.kind == "f" and not np.isfinite(data).all():
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise CalfError(f"{path}: {n_bad} NaN or infinite voxels")


def _present_labels(data: "np.ndarray") -> "np.ndarray":
    import numpy as np

    if data.dtype.kind in "iub" and data.size:
        lo, hi = int(data.min()), int(data.max())
        if lo >= 0 and hi < 1 << 16:  # counting is much faster than sorting
            return np.flatnonzero(np.bincount(data.reshape(-1).astype(np.intp), minlength=1))
    return np.unique(data)


def _check_labels(
    data: "np.ndarray", valid: Sequence[int], path: Path, label_map: str = "any"
) -> None:
    import numpy as np

    present = _present_labels(data)
    bad = present[~np.isin(present, np.asarray(valid, dtype=np.float64))]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:5].tolist()) + (", ..." if bad.size > 5 else "")
        allowed = ", ".join(str(v) for v in valid)
        hint = ""
        if label_map == "brats2023" and 4 in bad:  # calf.datasets.brats, rule 3
            hint = (
                "; BraTS 2024 post-treatment masks hold 4 (resection cavity): keep the case "
                "folders in training_data1_v2/ or pass --option release=2024_post"
            )
        raise CalfError(
            f"{path}: mask labels {shown} outside the valid set {{{allowed}}} of "
            f"{label_map} masks{hint}"
        )


# ---------------------------------------------------------------- arithmetic


def minmax_scale(volume: "np.ndarray", scaling: str) -> "np.ndarray":
    """float32 ``(X, Y, Z)`` scaled to [0, 255] per volume or per axial slice; constant -> 0."""
    import numpy as np

    v = volume.astype(np.float32, copy=False)
    axes = None if scaling == "volume" else (0, 1)
    lo = v.min(axis=axes, keepdims=True)
    span = v.max(axis=axes, keepdims=True) - lo
    scale = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0)
    return (v - lo) * scale


def resize_slices(
    slices: "torch.Tensor", size: int | tuple[int, int], mode: str
) -> "torch.Tensor":
    """Resize a float32 stack ``(Z, H, W)`` to ``(Z, size, size)`` (or ``(Z, *size)`` for a
    pair ``(H', W')``) with torch's interpolate.

    ``mode`` is ``bilinear`` (align_corners=False) or ``nearest`` (torch's
    ``nearest-exact``, the pixel-centre rule of PIL and scikit-image).
    """
    import torch.nn.functional as F

    target = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(slices.shape[1:]) == target:
        return slices
    t = slices.unsqueeze(1)
    if mode == "bilinear":
        out = F.interpolate(t, size=target, mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(t, size=target, mode="nearest-exact")
    return out[:, 0]


def process_case(case: Case, modalities: Sequence[str], settings: PreprocessSettings) -> CaseArrays:
    """Read, check and convert one case; CalfError naming the file on bad input."""
    import numpy as np
    import torch

    labels = read_canonical(case.mask)
    _check_finite(labels, case.mask)
    _check_labels(labels, case.valid_labels, case.mask, case.label_map)
    shape = labels.shape
    target = np.isin(labels, region_labels(case.label_map, settings.region, case.valid_labels))
    # (X, Y, Z) -> (Z, X, Y): one 2-D sample per axial slice
    tumour = torch.from_numpy(target).permute(2, 0, 1).to(torch.float32)
    del target
    del labels
    if settings.mask_resize == "bilinear":
        mask = resize_slices(tumour, settings.size, "bilinear") > 0
    else:
        mask = resize_slices(tumour, settings.size, "nearest") > 0.5
    images = {}
    for modality in modalities:
        path = case.images[modality]
        volume = read_canonical(path)
        if volume.shape != shape:
            raise CalfError(
                f"{case.mask}: mask shape {shape} differs from image shape {volume.shape} of {path}"
            )
        _check_finite(volume, path)
        scaled = torch.from_numpy(minmax_scale(volume, settings.scaling)).permute(2, 0, 1)
        del volume
        resized = resize_slices(scaled, settings.size, "bilinear")
        # bilinear weights are convex, so values stay in [0, 255] up to rounding
        images[modality] = resized.round().clamp_(0, 255).to(torch.uint8).contiguous().numpy()
    areas = mask.flatten(1).sum(dim=1).numpy()
    return CaseArrays(images=images, mask=mask.to(torch.uint8).contiguous().numpy(), areas=areas)


# ---------------------------------------------------------------- planning and identity


def _modalities_of(cases: Sequence[Case], settings: PreprocessSettings) -> tuple[str, ...]:
    if settings.modalities:
        wanted = tuple(settings.modalities)
    else:
        have = set().union(*(c.images for c in cases))
        wanted = tuple(m for m in MODALITIES if m in have) + tuple(sorted(have - set(MODALITIES)))
    for case in cases:
        missing = [m for m in wanted if m not in case.images]
        if missing:
            raise CalfError(
                f"case {case.case_id} of {case.dataset}: no {', '.join(missing)} image "
                f"(mask {case.mask})"
            )
    return wanted


def _plan(
    cases: Sequence[Case], modalities: Sequence[str], region: str
) -> list[CaseGeometry]:
    """Native grid of every case's mask, from the headers; checks image/mask shapes."""
    plan = []
    for case in cases:
        labels = region_labels(case.label_map, region, case.valid_labels)
        geometry = header_geometry(case.mask, case.label_map, labels)
        mask_shape = geometry.canonical_shape
        for modality in modalities:
            path = case.images[modality]
            shape = canonical_shape(path)
            if shape != mask_shape:
                raise CalfError(
                    f"{case.mask}: mask shape {mask_shape} differs from image shape {shape} "
                    f"of {path}"
                )
        plan.append(geometry)
    return plan


def input_fingerprint(cases: Sequence[Case], modalities: Sequence[str]) -> str:
    """sha256 over every input file's path, size and mtime, and the cases' identities."""
    records = []
    for case in cases:
        files = [("mask", case.mask)] + [(m, case.images[m]) for m in modalities]
        entry: list[Any] = [
            case.dataset,
            case.case_id,
            case.patient_id,
            list(case.valid_labels),
            case.label_map,
        ]
        for role, path in files:
            try:
                st = os.stat(path)
            except OSError as err:
                raise CalfError(f"{path}: cannot read ({_reason(err)})") from err
            entry.append([role, os.path.abspath(path), st.st_size, st.st_mtime_ns])
        records.append(entry)
    blob = json.dumps(records, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def region_table(cases: Sequence[Case], region: str) -> dict[str, list[int]]:
    """label convention -> the labels of ``region``, for every convention among ``cases``;
    CalfError (before anything is read) where a convention has no such region."""
    table: dict[str, list[int]] = {}
    for case in cases:
        if case.label_map not in table:
            try:
                labels = region_labels(case.label_map, region, case.valid_labels)
            except CalfError as err:
                raise CalfError(f"case {case.case_id} of {case.dataset}: {err}") from err
            table[case.label_map] = list(labels)
    return dict(sorted(table.items()))


def _settings_record(
    dataset: str, modalities: Sequence[str], s: PreprocessSettings, cases: Sequence[Case]
) -> dict:
    record = asdict(s)
    record.update(dataset=dataset, modalities=list(modalities), algorithm=ALGORITHM_VERSION)
    record["options"] = {str(k): str(v) for k, v in sorted(s.options.items())}
    record["region_labels"] = region_table(cases, s.region)
    return record


def _is_current(out: Path, settings: dict, fingerprint: str, force: bool = False) -> dict | None:
    """The existing store's metadata when it matches; None when it must be (re)built.
    CalfError for a file, or a non-empty folder that is not a store (unless ``force``)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if out.is_dir() and force and not (out / META_FILE).is_file():
        return None
    if not out.is_dir() or not (out / META_FILE).is_file():
        raise CalfError(
            f"{out}: exists and is not a slice store; refusing to overwrite it "
            "(remove it, choose another --out or pass --force)"
        )
    try:
        meta = read_meta(out)
    except CalfError:
        return None  # an older or damaged store of ours: rebuild
    files = (IMAGES_FILE, MASKS_FILE, INDEX_FILE, GEOMETRY_FILE)
    complete = all((out / name).is_file() for name in files)
    checked = meta.get("mask_values") == list(MASK_VALUES)  # else written before the check
    same = meta.get("settings") == settings and meta.get("fingerprint") == fingerprint
    if complete and checked and same:
        return meta
    return None


# ---------------------------------------------------------------- running


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no nested thread pools


def _results(
    cases: Sequence[Case], modalities: Sequence[str], settings: PreprocessSettings, workers: int
) -> Iterator[tuple[int, CaseArrays]]:
    """(position, arrays) per case, in completion order; at most 2 x workers in flight."""
    if workers <= 1:
        for i, case in enumerate(cases):
            yield i, process_case(case, modalities, settings)
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # imported here once: workers started by fork inherit them instead of importing each
    import nibabel  # noqa: F401
    import torch  # noqa: F401

    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
        pending: dict = {}
        todo = iter(enumerate(cases))
        try:
            while True:
                for i, case in todo:
                    pending[pool.submit(process_case, case, modalities, settings)] = i
                    if len(pending) >= 2 * workers:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _checked_cases(cases: Sequence[Case], out: Path) -> list[Case]:
    """The cases sorted by ID; CalfError unless they are one dataset with distinct IDs."""
    cases = sorted(cases, key=lambda c: c.case_id)
    if not cases:
        raise CalfError(f"{out}: no cases to preprocess")
    datasets = sorted({c.dataset for c in cases})
    if len(datasets) > 1:
        raise CalfError(f"{out}: one store per dataset, got cases of {', '.join(datasets)}")
    ids = [c.case_id for c in cases]
    duplicate = next((a for a, b in zip(ids, ids[1:]) if a == b), None)
    if duplicate is not None:
        raise CalfError(f"case ID {duplicate!r} appears twice in {datasets[0]}")
    return cases


@dataclass(frozen=True)
class _Rows:
    """Where each case's slices go: ``counts[i]`` axial slices of case ``i``, its masks from
    row ``mask_start[i]`` and its images (modality-major) from ``image_start[i]``."""

    counts: list[int]
    mask_start: "np.ndarray"
    image_start: "np.ndarray"

    @classmethod
    def of(cls, geometries: Sequence[CaseGeometry], n_modalities: int) -> _Rows:
        import numpy as np

        counts = [g.canonical_shape[2] for g in geometries]
        mask_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(counts, mask_start, mask_start * n_modalities)

    @property
    def n_masks(self) -> int:
        return int(self.mask_start[-1])

    @property
    def n_images(self) -> int:
        return int(self.image_start[-1])


def _write_arrays(
    folder: Path,
    cases: Sequence[Case],
    modalities: Sequence[str],
    settings: PreprocessSettings,
    rows: _Rows,
    workers: int,
    progress: bool,
) -> "np.ndarray":
    """Fill ``images.npy`` and ``masks.npy`` in ``folder`` case by case, checking each
    case's binary target; return the tumour area of every mask."""
    import numpy as np
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    size = settings.size
    images = open_memmap(folder / IMAGES_FILE, "w+", np.uint8, (rows.n_images, size, size))
    masks = open_memmap(folder / MASKS_FILE, "w+", np.uint8, (rows.n_masks, size, size))
    areas = np.zeros(rows.n_masks, dtype=np.int64)
    bar = tqdm(
        total=len(cases),
        desc=f"preprocess {cases[0].dataset}",
        unit="case",
        file=sys.stderr,
        disable=not progress,
    )
    with closing(_results(cases, modalities, settings, workers)) as results, bar:
        for i, arrays in results:
            z = rows.counts[i]
            if arrays.mask.shape[0] != z:  # header and data disagree
                raise CalfError(
                    f"{cases[i].mask}: header promises {z} slices, "
                    f"data has {arrays.mask.shape[0]}"
                )
            if arrays.mask.dtype != np.uint8 or int(arrays.mask.max(initial=0)) > 1:
                raise CalfError(f"{cases[i].mask}: the binary target is not uint8 0/1")
            m0 = rows.mask_start[i]
            masks[m0 : m0 + z] = arrays.mask
            areas[m0 : m0 + z] = arrays.areas
            for k, modality in enumerate(modalities):
                i0 = rows.image_start[i] + k * z
                images[i0 : i0 + z] = arrays.images[modality]
            bar.update(1)
    images.flush()
    masks.flush()
    return areas


def _store_meta(
    settings: dict, fingerprint: str, n_cases: int, rows: _Rows, areas: "np.ndarray"
) -> dict[str, Any]:
    """The ``store.json`` record, written last: a store with it is complete."""
    import numpy as np

    return {
        "format": FORMAT_VERSION,
        "settings": settings,
        "fingerprint": fingerprint,
        # checked per case while writing: training trusts it and skips the per-step check
        "mask_values": list(MASK_VALUES),
        "counts": {
            "cases": n_cases,
            "images": rows.n_images,
            "masks": rows.n_masks,
            "tumour_masks": int(np.count_nonzero(areas)),
        },
    }


def preprocess(
    cases: Sequence[Case],
    out: str | Path,
    settings: PreprocessSettings = PreprocessSettings(),
    workers: int = 1,
    progress: bool = True,
    force: bool = False,
) -> StoreSummary:
    """Build (or confirm up to date) the slice store of one dataset's cases at ``out``.

    An existing store at ``out`` (it holds ``store.json``) is kept when current and rebuilt
    otherwise; another non-empty folder is refused unless ``force``."""
    out = Path(out)
    cases = _checked_cases(cases, out)
    modalities = _modalities_of(cases, settings)
    record = _settings_record(cases[0].dataset, modalities, settings, cases)
    fingerprint = input_fingerprint(cases, modalities)
    meta = _is_current(out, record, fingerprint, force)
    if meta is not None:
        c = meta["counts"]
        return StoreSummary(out, False, c["cases"], c["images"], c["masks"])

    geometries = _plan(cases, modalities, settings.region)
    rows = _Rows.of(geometries, len(modalities))
    with atomic_dir(out, owned_by=META_FILE, force=force) as folder:
        areas = _write_arrays(folder, cases, modalities, settings, rows, workers, progress)
        index = _index_table(cases, modalities, rows.counts, rows.mask_start, rows.image_start,
                             areas)
        index.to_parquet(folder / INDEX_FILE, index=False)
        geometry = {
            "format": GEOMETRY_FORMAT,
            "cases": {c.case_id: g.to_record() for c, g in zip(cases, geometries)},
        }
        (folder / GEOMETRY_FILE).write_text(json_text(geometry))
        meta = _store_meta(record, fingerprint, len(cases), rows, areas)
        (folder / META_FILE).write_text(json_text(meta))
    return StoreSummary(out, True, len(cases), rows.n_images, rows.n_masks)


def _index_table(cases, modalities, counts, mask_start, image_start, areas):
    import numpy as np
    import pandas as pd

    z = np.asarray(counts, dtype=np.int64)
    n_mod = len(modalities)
    per_case = z * n_mod
    case_pos = np.repeat(np.arange(len(cases)), per_case)
    # position inside a case's block: modality-major, then slice
    within = np.arange(int(per_case.sum())) - np.repeat(image_start[:-1], per_case)
    zz = np.repeat(z, per_case)
    slice_idx = within % zz
    mod_idx = within // zz
    mask_row = mask_start[:-1][case_pos] + slice_idx
    return pd.DataFrame(
        {
            "dataset": np.asarray([c.dataset for c in cases], dtype=object)[case_pos],
            "case_id": np.asarray([c.case_id for c in cases], dtype=object)[case_pos],
            "patient_id": np.asarray([c.patient_id for c in cases], dtype=object)[case_pos],
            "modality": np.asarray(list(modalities), dtype=object)[mod_idx],
            "slice": slice_idx.astype(np.int32),
            "area": areas[mask_row],
            "image_row": np.arange(int(per_case.sum()), dtype=np.int64),
            "mask_row": mask_row,
        }
    )
