"""``calf evaluate``: predict every validation case of a fold, score it, write the outputs.

For each validation case of the fold (``splits_final.json``, in its order) and each of its
modalities (store order), the case's axial slices are predicted in slice order, stacked
back into a volume ``(x, y, z)`` at training size and scored with ``case_metrics``.
Outputs beside ``--out X.csv`` (the names of ``calf.layout.metrics_companions``; README.md,
"Evaluation: the field's metrics, on the field's grid"):

- ``X.csv``: one row per case and modality (``CASE_COLUMNS``; ``ratio`` and ``seed``
  columns when given): its identity, every metric, the counts (truth and predicted voxels,
  lesions) and the grid it was scored on (``GRID_COLUMNS``: ``tumour_ml``, the truth's
  volume in ml, ``grid_shape`` in voxels as ``240x240x155`` and ``spacing_mm`` in the same
  axis order as ``1x1x1``; the native grid, or the training grid with ``--space training``).
  ``case_id`` is the splits key: the bare case ID with one store, ``<dataset>/<case_id>``
  with several (pooled), so rows stay unique. ``subject_id``, the
  statistics' unit, is the patient's subject in the split's subjects table (``--subjects``,
  ``calf.split.subject_table``: one ID for a person linked across releases), else
  ``<dataset>/<patient_id>`` with the case's store dataset.
- ``X.json``: empty-mask conventions, metric settings, HD95 units, what ``tumour_ml`` is,
  inputs, summary.
- ``X_slices.csv``: TP, FP, FN, TN per slice in the order evaluated, the table the authors'
  batch-pooled Dice is drawn from (``calf.evaluate.pooled``; its settings in ``X.json``).
- ``X_overlays/``: ``best.png``, ``median.png``, ``worst.png`` by Dice (NaN Dice excluded;
  ties go to the earlier row; the median is the lower middle), each with the arrays of its
  slice beside it (``best.npz``: ``image`` uint8, ``truth`` and ``pred`` bool, 2-D), which
  the report's overlay grid draws from (``calf.evaluate.overlays``).

Where a case is scored (``space``):

- ``native`` (default): its predicted slices are brought back to the case's original grid
  (``calf.evaluate.native.to_native``: the resize and the reorientation undone, logits
  resampled then thresholded or the mask resampled nearest-neighbour, ``resample``) and
  scored against the original mask read from the release, with the header's spacing: the
  grid nnU-Net and BraTS score on.
- ``training``: the stacked S x S x Z training-grid slices against the store's masks, with
  the training grid's spacing (fast; not comparable with published numbers).

Either way HD95 and NSD are in mm (the store's ``geometry.json``). The conventions preset
(``suite``, ``brats``, ``nnunet``; ``auto``: ``brats`` for BraTS-family label maps, else
``suite``) fills undefined cells and, for ``brats``, picks the official HD95. The
batch-pooled Dice and the overlays stay on the training grid (the authors' definition).
Every file is written to a temporary file beside it and the overlays into a staging folder
(``calf._fs``), renamed into place at the end, ``X.csv`` last: a failure leaves no output
behind. An existing output is replaced only with ``--force``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf import __version__
from calf._fs import atomic_dir, atomic_files, check_replaceable, check_writable
from calf._json import json_safe
from calf.device import resolve_device
from calf.errors import CalfError
from calf.evaluate.companion import RESULT_FORMAT, companion_text
from calf.evaluate.conventions import PRESET_NAMES, EmptyConventions, read_conventions
from calf.evaluate.metrics import (
    COUNT_COLUMNS,
    GRID_COLUMNS,
    METRICS,
    MetricSettings,
    case_metrics,
    grid_columns,
    metric_settings,
    slice_counts,
)
from calf.evaluate.overlays import overlay_slice, write_overlay, write_overlay_arrays
from calf.evaluate.pooled import (
    CONFUSION_COLUMNS,
    POOLED_BATCH,
    POOLED_SEED,
    POOLED_SUMMARY_KEY,
    batch_pooled_dice,
    pooled_settings,
)
from calf.evaluate.predict import PREDICT_BATCH, TrainedRun, load_run, loss_name, predict_rows
from calf.layout import METRICS_SUFFIX, metrics_companions

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from calf.store import SliceStore

SPACES = ("native", "training")  # the first is the default
CASE_COLUMNS = (
    "case_id",
    "patient_id",
    "subject_id",
    "modality",
    "dataset",
    "model",
    "loss",
    "fold",
    *METRICS,
    *COUNT_COLUMNS,
    *GRID_COLUMNS,
)
SLICE_COLUMNS = ("case_id", "modality", "slice", *CONFUSION_COLUMNS)
OVERLAY_RANKS = ("best", "median", "worst")


@dataclass(frozen=True)
class OutputPaths:
    """``X.csv`` and its companions ``X.json``, ``X_slices.csv``, ``X_overlays/``."""

    csv: Path
    json: Path
    slices: Path
    overlays: Path

    @classmethod
    def of(cls, out: str | Path) -> OutputPaths:
        out = Path(out)
        if out.suffix != METRICS_SUFFIX:
            raise CalfError(f"--out {out}: the per-case metrics file must end in {METRICS_SUFFIX}")
        return cls(*metrics_companions(out))

    def files(self) -> tuple[Path, ...]:
        """The output files, in the order they are renamed into place (the CSV last)."""
        return (self.json, self.slices, self.csv)

    def all(self) -> tuple[Path, ...]:
        """Every output: the files and the overlays folder."""
        return (*self.files(), self.overlays)

    def check(self, force: bool) -> None:
        """CalfError when an output file exists, or the overlays folder is not empty, unless
        ``force`` (the suite's rule for existing outputs, ``calf._fs``)."""
        for path in self.files():
            check_writable(path, force)
        check_replaceable(self.overlays, None, force)


@dataclass(frozen=True)
class Labels:
    """Values of the descriptive CSV columns; None: from the checkpoint config or the store."""

    dataset: str | None = None
    model: str | None = None
    loss: str | None = None
    ratio: float | str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class _Volume:
    """One (case, modality) of the fold's validation cases: its store rows in slice order."""

    store: SliceStore
    key: str
    case_id: str
    dataset: str
    patient_id: str
    subject_id: str
    modality: str
    rows: np.ndarray
    slices: np.ndarray


def _open_stores(paths: Sequence[str | Path]) -> list[SliceStore]:
    from calf.store import SliceStore

    if not paths:
        raise CalfError("no slice store given (--store)")
    stores, seen = [], {}
    for path in paths:
        store = SliceStore(path)
        if store.dataset in seen:
            raise CalfError(
                f"{path}: dataset {store.dataset!r} is already loaded from {seen[store.dataset]}"
            )
        seen[store.dataset] = path
        if stores and store.size != stores[0].size:
            raise CalfError(
                f"{path}: slice size {store.size} differs from {stores[0].path}'s {stores[0].size}"
            )
        stores.append(store)
    return stores


def _subject_of(
    subjects: tuple[str, dict[tuple[str, str], str]] | None, dataset: str, patient_id: str,
    key: str,
) -> str:
    """A patient's subject: from the subjects table ``(file, table)``, else its own name."""
    if subjects is None:
        return f"{dataset}/{patient_id}"
    source, table = subjects
    if (dataset, patient_id) not in table:
        raise CalfError(
            f"{source}: no subject for patient {dataset}/{patient_id} (case {key!r}); "
            "pass the subjects table written with this splits file"
        )
    return table[(dataset, patient_id)]


def validation_volumes(
    stores: Sequence[SliceStore],
    keys: Sequence[str],
    source: str,
    fold: int,
    subjects: tuple[str, dict[tuple[str, str], str]] | None = None,
) -> list[_Volume]:
    """The (case, modality) volumes of the validation keys, in key then store order.

    ``subjects``: the subjects table's file and ``calf.split.read_subjects`` mapping
    (None: each patient is its own subject).
    """
    import numpy as np

    from calf.store import INDEX_FILE

    pooled = len(stores) > 1
    lookup: dict[str, tuple[SliceStore, pd.DataFrame]] = {}
    for store in stores:
        index = store.index.assign(position=np.arange(len(store.index)))  # the row id
        for case_id, frame in index.groupby("case_id", sort=False):
            lookup[f"{store.dataset}/{case_id}" if pooled else str(case_id)] = (store, frame)
    volumes = []
    for key in keys:
        if key not in lookup:
            where = ", ".join(str(s.path) for s in stores)
            raise CalfError(
                f"{source}: validation case {key!r} of fold {fold} is not in the store(s) {where}"
            )
        store, frame = lookup[key]
        for modality, rows in frame.groupby("modality", sort=False):
            rows = rows.sort_values("slice", kind="stable")
            slices = rows["slice"].to_numpy()
            if (slices[1:] - slices[:-1] != 1).any():
                raise CalfError(
                    f"{store.path / INDEX_FILE}: case {key!r} modality {modality!r} has missing or "
                    "repeated slices; cannot stack them into a volume"
                )
            patient_id = str(rows["patient_id"].iat[0])
            volumes.append(
                _Volume(
                    store,
                    key,
                    str(rows["case_id"].iat[0]),
                    store.dataset,
                    patient_id,
                    _subject_of(subjects, store.dataset, patient_id, key),
                    str(modality),
                    rows["position"].to_numpy(),
                    slices,
                )
            )
    return volumes


def _labels(trained: TrainedRun, labels: Labels) -> tuple[str | None, str, str]:
    """dataset (None: each case's store), model and loss columns: options, else checkpoint."""
    loss = labels.loss or loss_name(trained.config)
    if loss is None:
        raise CalfError(
            f"{trained.path}: the checkpoint config names no loss (key 'loss'); pass --loss"
        )
    return labels.dataset, labels.model or trained.model_name, loss


@dataclass
class _Scores:
    """What scoring the volumes gives: both tables and each volume's overlay slice."""

    cases: pd.DataFrame
    slices: pd.DataFrame
    # per volume: image (uint8), truth, prediction of the overlay slice, and its index
    shown: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]


@dataclass(frozen=True)
class Scoring:
    """Where and how cases are scored: space, resampling, conventions, metric settings."""

    space: str = "native"
    resample: str = "logits"
    conventions: EmptyConventions = EmptyConventions()
    metrics: MetricSettings = MetricSettings()

    def __post_init__(self) -> None:
        from calf.evaluate.native import RESAMPLES

        if self.space not in SPACES:
            raise CalfError(f"--space {self.space!r}: expected one of {', '.join(SPACES)}")
        if self.resample not in RESAMPLES:
            raise CalfError(
                f"--resample {self.resample!r}: expected one of {', '.join(RESAMPLES)}"
            )


def resolve_preset(preset: str, stores: Sequence[SliceStore]) -> str:
    """``auto``: the preset the stores' label maps imply (``calf.datasets.regions``)."""
    from calf.datasets.regions import default_preset

    if preset == "auto":
        maps = [m for s in stores for m in (s.meta["settings"].get("region_labels") or {})]
        return default_preset(maps)
    if preset not in PRESET_NAMES:
        raise CalfError(f"--preset {preset!r}: expected auto or one of {', '.join(PRESET_NAMES)}")
    return preset


def _scored_volume(
    vol: _Volume, logits: np.ndarray, truth: np.ndarray, scoring: Scoring, truths: dict
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Prediction, truth and spacing (mm) of one volume on the grid it is scored on.

    ``truths`` caches each case's native mask across its modalities.
    """
    import numpy as np

    from calf.evaluate.native import read_truth, to_native

    geometry = vol.store.geometry(vol.case_id)
    if scoring.space == "training":
        # (n, S, S) slices -> (x, y, z) volume, the canonical axis order of the spacing
        pred, true = np.moveaxis(logits > 0, 0, -1), np.moveaxis(truth, 0, -1)
        return pred, true, geometry.training_spacing(vol.store.size)
    if vol.key not in truths:
        truths.clear()  # one case at a time: its modalities are consecutive
        truths[vol.key] = read_truth(geometry)
    return to_native(logits, geometry, scoring.resample), truths[vol.key], geometry.spacing


def _score(
    trained: TrainedRun,
    volumes: Sequence[_Volume],
    scoring: Scoring,
    columns: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> _Scores:
    """Predict and score every volume; ``columns`` fill the descriptive CSV columns."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    case_rows, slice_frames, shown, truths = [], [], [], {}
    for vol in tqdm(volumes, desc="evaluate", unit="volume", disable=None if progress else True):
        images, truth, logits = predict_rows(trained, vol.store, vol.rows, batch_size)
        pred = logits > 0
        counts = slice_counts(pred, truth)
        slice_frames.append(
            pd.DataFrame(
                {"case_id": vol.key, "modality": vol.modality, "slice": vol.slices}
                | {c: counts[:, i] for i, c in enumerate(CONFUSION_COLUMNS)}
            )
        )
        scored_pred, scored_truth, spacing = _scored_volume(vol, logits, truth, scoring, truths)
        scored = case_metrics(scored_pred, scored_truth, scoring.conventions, spacing,
                              scoring.metrics)
        case_rows.append(
            {"case_id": vol.key, "patient_id": vol.patient_id, "subject_id": vol.subject_id}
            | {"modality": vol.modality}
            | {"dataset": columns["dataset"] or vol.dataset}
            | {k: columns[k] for k in ("model", "loss", "fold")}
            | scored
            | grid_columns(scored_pred.shape, spacing, scored["tumour_voxels"])
        )
        k = overlay_slice(truth, pred)
        image = np.rint(images[k] * 255).astype(np.uint8)  # the store's own pixels, compact
        shown.append((image, truth[k], pred[k], int(vol.slices[k])))
    cases = pd.DataFrame(case_rows, columns=list(CASE_COLUMNS))
    for key in ("ratio", "seed"):
        if columns[key] is not None:
            cases[key] = columns[key]
    slices = pd.concat(slice_frames, ignore_index=True)[list(SLICE_COLUMNS)]
    return _Scores(cases, slices, shown)


def _scoring_record(scoring: Scoring) -> dict[str, Any]:
    """Where the metrics were computed, in words, for the companion JSON."""
    from calf.evaluate.native import native_settings

    if scoring.space == "training":
        return {
            "space": "training",
            "grid": "the S x S training slices of each case stacked in slice order (RAS)",
            "spacing": "the case's canonical voxel size scaled by its in-plane extent / S (mm)",
            "truth": "the store's resized masks",
        }
    return {"space": "native", **native_settings(scoring.resample)}


def scoring_summary(records: Sequence[dict[str, Any]]) -> str:
    """One caption sentence: where the runs' cases were scored, in which units, with which
    conventions preset (``records``: metrics companion JSONs; older ones say so)."""
    spaces, presets, tolerances, old = [], [], [], 0
    for record in records:
        if "preset" not in record or "space" not in record:
            old += 1
            continue
        for values, value in ((spaces, record["space"]), (presets, record["preset"]),
                              (tolerances, (record.get("metrics") or {}).get("nsd_tolerance_mm"))):
            if value is not None and value not in values:
                values.append(value)
    if not spaces:
        return ("Scoring: not recorded by these metrics files (an older result format: HD95 "
                "in voxels).")
    where = " and ".join(
        "each case's original grid (native space)" if s == "native" else "the training grid"
        for s in spaces
    )
    nsd = ", NSD at " + " and ".join(f"{t:g} mm" for t in tolerances) if tolerances else ""
    text = (f"Scored on {where}; HD95 in mm{nsd}; conventions preset "
            f"{' and '.join(presets)} for undefined values.")
    return text + (f" {old} metrics file(s) of an older format record none." if old else "")


def _overlay_picks(dice: np.ndarray) -> dict[str, int]:
    """Row positions of the best, median and worst Dice (NaN excluded)."""
    import numpy as np

    valid = np.flatnonzero(~np.isnan(dice))
    if valid.size == 0:
        return {}
    order = valid[np.argsort(dice[valid], kind="stable")]
    return {
        "best": int(order[-1]),
        "median": int(order[(len(order) - 1) // 2]),
        "worst": int(order[0]),
    }


def _write_overlays(folder: Path, scores: _Scores, picks: dict[str, Any], title: str) -> None:
    """Each pick's PNG and the arrays of its slice, into ``folder``."""
    for rank, shown in picks.items():
        image, truth, pred, z = scores.shown[shown["row"]]
        caption = (f"{rank}: {shown['case_id']} {shown['modality']}, slice {z}, "
                   f"Dice {shown['dice']:.3f}\n{title}")
        write_overlay(folder / shown["file"], image, truth, pred, caption)
        write_overlay_arrays(folder / shown["arrays"], image, truth, pred)


def _write(paths: OutputPaths, scores: _Scores, record: dict[str, Any], title: str,
           force: bool) -> None:
    """Write every output beside ``X.csv``: each file into a temporary file, the overlays
    into a staging folder (``calf._fs``); once all are written the folder takes its place,
    then the files, the CSV last. A failure before leaves no new output behind."""
    with atomic_files(paths.files(), force=force) as (json_tmp, slices_tmp, csv_tmp):
        scores.cases.to_csv(csv_tmp, index=False)
        scores.slices.to_csv(slices_tmp, index=False)
        json_tmp.write_text(companion_text(record))
        with atomic_dir(paths.overlays, force=force) as folder:
            _write_overlays(folder, scores, record["overlays"], title)


@dataclass(frozen=True)
class _Plan:
    """What an evaluation reads, checked before the first prediction."""

    paths: OutputPaths
    stores: list[SliceStore]
    keys: list[str]
    scoring: Scoring
    volumes: list[_Volume]


def _check_native_masks(volumes: Sequence[_Volume], space: str) -> None:
    """Every case's geometry, and in native space its original mask file, before predicting."""
    for vol in volumes:
        geometry = vol.store.geometry(vol.case_id)
        if space == "native" and not Path(geometry.mask).is_file():
            raise CalfError(
                f"{geometry.mask}: the original mask of case {vol.key!r} is gone; native-space "
                "evaluation reads it (restore the release, or pass --space training)"
            )


def _plan(
    stores: Sequence[str | Path],
    splits: str | Path,
    fold: int,
    out: str | Path,
    conventions: str | Path | EmptyConventions | None,
    scoring: tuple[str, str, str, MetricSettings],
    batch_size: int,
    force: bool,
    subjects: str | Path | None,
) -> _Plan:
    """Check the outputs and every input; ``scoring``: space, resample, preset, metrics."""
    from calf.split import read_splits, read_subjects, val_cases

    paths = OutputPaths.of(out)
    paths.check(force)
    if batch_size < 1:
        raise CalfError(f"--batch-size {batch_size}: expected a positive number of slices")
    keys = val_cases(read_splits(splits), fold, str(splits))
    if not keys:
        raise CalfError(f"{splits}: fold {fold} has no validation cases")
    opened = _open_stores(stores)
    space, resample, preset, metrics = scoring
    if isinstance(conventions, EmptyConventions):
        conv = conventions
    else:
        conv = read_conventions(conventions, resolve_preset(preset, opened))
    subject_table = None if subjects is None else (str(subjects), read_subjects(subjects))
    volumes = validation_volumes(opened, keys, str(splits), fold, subject_table)
    _check_native_masks(volumes, space)
    return _Plan(paths, opened, list(keys), Scoring(space, resample, conv, metrics), volumes)


def _summary(scores: _Scores) -> dict[str, float]:
    """Each metric's mean over the CSV's rows and the authors' batch-pooled Dice."""
    means = {f"mean_{m}": float(scores.cases[m].mean()) for m in METRICS}
    pooled = batch_pooled_dice(scores.slices, POOLED_BATCH, POOLED_SEED)
    return {**means, POOLED_SUMMARY_KEY: pooled}


def _overlay_record(scores: _Scores) -> dict[str, dict[str, Any]]:
    """The companion's ``overlays``: per pick its files, CSV row, case, slice and Dice."""
    cases = scores.cases
    return {
        rank: {
            "file": f"{rank}.png",
            "arrays": f"{rank}.npz",
            "row": i,
            "case_id": cases.at[i, "case_id"],
            "modality": cases.at[i, "modality"],
            "slice": scores.shown[i][3],
            "dice": float(cases.at[i, "dice"]),
        }
        for rank, i in _overlay_picks(cases["dice"].to_numpy(dtype=float)).items()
    }


def _inputs_record(run: str | Path, trained: TrainedRun, splits: str | Path,
                   subjects: str | Path | None, plan: _Plan) -> dict[str, Any]:
    """What was evaluated: the run, its checkpoint, the splits, subjects and stores."""
    return {
        "run": str(run),
        "checkpoint_epoch": trained.epoch,
        "splits": str(splits),
        "subjects": None if subjects is None else str(subjects),
        "subject_id": (
            "the subjects table's subject of each (dataset, patient_id)"
            if subjects is not None
            else "<dataset>/<patient_id>, dataset the case's store's: no subjects table"
        ),
        "stores": [str(s.path) for s in plan.stores],
    }


def _scoring_settings(plan: _Plan) -> dict[str, Any]:
    """How the cases were scored: conventions, metric settings, space, units, pooling."""
    conv, metrics = plan.scoring.conventions, plan.scoring.metrics
    return {
        "conventions": conv.to_dict(),
        "preset": conv.label(),
        "metrics": metric_settings(conv, metrics),
        "space": plan.scoring.space,
        "scoring": _scoring_record(plan.scoring),
        "batch_pooled_dice": pooled_settings(POOLED_BATCH, POOLED_SEED),
        "hd95_units": "mm",
        "tumour_ml": "tumour_voxels x the scored grid's voxel volume (mm^3) / 1000; "
                     "grid_shape and spacing_mm: that grid, voxels and mm per axis",
        "nsd_units": f"fraction of surface within {metrics.nsd_tolerance_mm:g} mm",
    }


def evaluate(
    run: str | Path,
    stores: Sequence[str | Path],
    splits: str | Path,
    fold: int,
    out: str | Path,
    conventions: str | Path | EmptyConventions | None = None,
    labels: Labels = Labels(),
    space: str = "native",
    resample: str = "logits",
    preset: str = "auto",
    metrics: MetricSettings = MetricSettings(),
    batch_size: int = PREDICT_BATCH,
    device: str = "auto",
    force: bool = False,
    progress: bool = False,
    subjects: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run on a fold's validation cases and write the outputs.

    ``subjects``: the split's subjects table (``calf split folds``), the source of the
    ``subject_id`` column (None: ``<dataset>/<patient_id>``). ``space``, ``resample``,
    ``preset`` (with ``conventions`` overriding single keys; an ``EmptyConventions`` is
    used as it is) and ``metrics``: see the module docstring. Every input is checked
    before the first prediction. An existing output is replaced only with ``force``.
    Returns the companion JSON record as written (NaN as None).
    """
    plan = _plan(stores, splits, fold, out, conventions, (space, resample, preset, metrics),
                 batch_size, force, subjects)
    trained = load_run(run, resolve_device(device))
    dataset, model, loss = _labels(trained, labels)
    columns = {"dataset": dataset, "model": model, "loss": loss, "fold": fold}
    columns |= {"ratio": labels.ratio, "seed": labels.seed}

    scores = _score(trained, plan.volumes, plan.scoring, columns, batch_size, progress)
    paths = plan.paths
    record = {
        "format": RESULT_FORMAT,
        "files": {"cases": paths.csv.name, "slices": paths.slices.name,
                  "overlays": paths.overlays.name},
        **_inputs_record(run, trained, splits, subjects, plan),
        **columns,
        "device": str(trained.device),
        # the run's protocol switches (calf.protocol) and how it executed, for the captions
        "protocol": (trained.config.get("params") or {}).get("protocol"),
        "execution": trained.config.get("execution"),
        "batch_size": batch_size,
        **_scoring_settings(plan),
        "counts": {"cases": len(plan.keys), "volumes": len(scores.cases),
                   "slices": len(scores.slices)},
        "summary": _summary(scores),
        "overlays": _overlay_record(scores),
        "calf_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record = json_safe(record)
    _write(paths, scores, record, f"{model} / {loss} / fold {fold}", force)
    return record
