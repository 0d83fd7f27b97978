"""Tumour sizes, size classes, training-set regimes and per-patient advantages.

A case's truth (``tumour_voxels``, and ``tumour_ml``: its volume on the grid it was scored
on) is the same in every row of it, whatever the loss, model, modality, seed or ratio; a
patient's size is the mean over its exams. Sizes are in ml when every tumour-bearing
patient of the study has ``tumour_ml`` (per-case CSVs of the native-space evaluation), else
in voxels (older CSVs). Patients without tumour form the class ``NO_TUMOUR``; the others
are split by ``analysis.size_bins``: an integer n, quantile classes ``Q1..Qn`` of the
study's tumour-bearing patients (``pandas.qcut``; edges that coincide are merged), or
ascending edges in the size unit, classes ``B1..B(k+1)``: (0, e1), [e1, e2), ..., [ek, inf)
(``pandas.cut``). ``patient_advantages`` pairs every CALF loss with every baseline per
patient (``calf.stats.collect.row_table``/``patient_tables``, as ``calf stats`` does), with
the patient's size class; ``training_regimes`` reads the training sets' profiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.naming import LOSS_NAMES, ordered
from calf.stats.collect import (
    GROUP_KEYS,
    HIGHER_IS_BETTER,
    SUBJECT_COLUMN,
    patient_tables,
    row_table,
)

if TYPE_CHECKING:
    import pandas as pd

NO_TUMOUR = "no tumour"
ML, VOXELS = "ml", "voxels"
QUANTILE_PREFIX, EDGE_PREFIX = "Q", "B"
MIN_QUANTILE_BINS = 2
PATIENT_KEYS = ("study", "dataset", SUBJECT_COLUMN)
CASE_TRUTH_KEYS = ("study", "dataset", "case_id")
CLASS_COLUMNS = ("size_class", "class_low", "class_high")
SIZES_COLUMNS = (*PATIENT_KEYS, "n_cases", "tumour_voxels", "tumour_ml", "size", "size_unit",
                 *CLASS_COLUMNS)
CASE_SIZE_COLUMNS = (*CASE_TRUTH_KEYS, SUBJECT_COLUMN, "tumour_voxels", "tumour_ml", "size",
                     "size_unit", "size_class")
ADVANTAGE_COLUMNS = (*GROUP_KEYS, "metric", "calf_loss", "baseline", SUBJECT_COLUMN, "size",
                     "size_unit", *CLASS_COLUMNS, "calf_value", "baseline_value", "diff",
                     "advantage")
REGIME_COLUMNS = ("study", "dataset", "ratio", "fold", "n_slices", "n_tumour_slices",
                  "tumour_slice_ratio", "skewness", "kurtosis", "branch", "area_definition",
                  "source")
SIZE_BINS_TEXT = ("expected a whole number of quantile classes >= 2 or a list of ascending "
                  "positive edges")


def check_size_bins(size_bins: object) -> int | tuple[float, ...]:
    """``analysis.size_bins`` checked: an int >= 2, or ascending positive finite edges (a
    list or tuple); CalfError naming the option and the value otherwise."""
    if isinstance(size_bins, bool):
        raise CalfError(f"analysis.size_bins: {size_bins!r}: {SIZE_BINS_TEXT}")
    if isinstance(size_bins, int):
        if size_bins < MIN_QUANTILE_BINS:
            raise CalfError(f"analysis.size_bins: {size_bins!r}: {SIZE_BINS_TEXT}")
        return size_bins
    if not isinstance(size_bins, (list, tuple)) or not size_bins:
        raise CalfError(f"analysis.size_bins: {size_bins!r}: {SIZE_BINS_TEXT}")
    numbers = all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in size_bins)
    if not numbers or not all(math.isfinite(e) and e > 0 for e in size_bins):
        raise CalfError(f"analysis.size_bins: {list(size_bins)!r}: {SIZE_BINS_TEXT}")
    if any(b <= a for a, b in zip(size_bins, size_bins[1:])):
        raise CalfError(f"analysis.size_bins: {list(size_bins)!r}: edges not ascending")
    return tuple(float(e) for e in size_bins)


def _truth_conflict(cases: "pd.DataFrame", column: str, conflict: "pd.Series") -> None:
    """CalfError naming the first case whose rows disagree on ``column``, and two files."""
    study, dataset, case_id = conflict[conflict].index[0]
    rows = cases[(cases["study"] == study) & (cases["dataset"] == dataset)
                 & (cases["case_id"] == case_id)]
    first = rows.iloc[0]
    other = rows[rows[column] != first[column]].iloc[0]
    raise CalfError(
        f"{study}/{dataset}: case {case_id} has {column} {first[column]:g} in "
        f"{first['source']} but {other[column]:g} in {other['source']} (a case's truth is "
        "the same in every run)")


def case_truths(cases: "pd.DataFrame") -> "pd.DataFrame":
    """One row per (study, dataset, case_id): its subject, ``tumour_voxels`` and
    ``tumour_ml`` (NaN where no row has it). Rows of a case that disagree on either (ml
    within float tolerance) raise a CalfError naming the case and two files."""
    import numpy as np
    import pandas as pd

    if "tumour_ml" not in cases.columns:  # rows of an older load_case_metrics
        cases = cases.assign(tumour_ml=np.nan)
    grouped = cases.groupby(list(CASE_TRUTH_KEYS), sort=True)
    voxels = grouped["tumour_voxels"].agg(["min", "max"])
    if (voxels["min"] != voxels["max"]).any():
        _truth_conflict(cases, "tumour_voxels", voxels["min"] != voxels["max"])
    ml = grouped["tumour_ml"].agg(["min", "max"])
    differs = ~np.isclose(ml["min"], ml["max"], equal_nan=True)
    if differs.any():
        _truth_conflict(cases.dropna(subset=["tumour_ml"]), "tumour_ml",
                        pd.Series(differs, index=ml.index))
    subject = grouped[SUBJECT_COLUMN].first()
    return (voxels[["min"]].rename(columns={"min": "tumour_voxels"})
            .assign(tumour_ml=ml["min"], **{SUBJECT_COLUMN: subject}).reset_index())


def _size_unit(patients: "pd.DataFrame") -> str:
    """ml when every tumour-bearing patient has ``tumour_ml``, else voxels."""
    bearing = patients["tumour_voxels"] > 0
    return ML if patients.loc[bearing, "tumour_ml"].notna().all() else VOXELS


def _quantile_classes(sizes: "pd.Series", n: int, study: str, notes: list[str]):
    """``pandas.qcut`` of the tumour-bearing patients' sizes into n classes (coinciding
    edges dropped, a note): (label per patient, low per patient, high per patient)."""
    import numpy as np
    import pandas as pd

    if sizes.nunique() == 1:  # every patient the same size: one class, [size, size]
        codes, edges = np.zeros(len(sizes), dtype=int), np.repeat(sizes.iloc[0], 2)
    else:
        codes, edges = pd.qcut(sizes, n, labels=False, retbins=True, duplicates="drop")
        codes = codes.to_numpy(dtype=int)
    made = edges.size - 1
    if made < n:
        notes.append(f"study {study}: {made} size classes instead of {n} (quantile edges "
                     f"coincide: tied sizes among {len(sizes)} tumour-bearing patients)")
    labels = np.array([f"{QUANTILE_PREFIX}{i + 1}" for i in range(made)], dtype=object)
    return labels[codes], edges[codes], edges[codes + 1]


def _edge_classes(sizes: "pd.Series", edges: tuple[float, ...], study: str,
                  notes: list[str]):
    """``pandas.cut`` of the sizes at ``edges``, left-closed: (0, e1), [e1, e2), ...,
    [ek, inf); a note names the classes without a patient."""
    import numpy as np
    import pandas as pd

    bounds = np.array([0.0, *edges, np.inf])
    codes = pd.cut(sizes, bounds, right=False, labels=False).to_numpy(dtype=int)
    labels = np.array([f"{EDGE_PREFIX}{i + 1}" for i in range(bounds.size - 1)], dtype=object)
    empty = [label for i, label in enumerate(labels) if not (codes == i).any()]
    if empty:
        notes.append(f"study {study}: size class(es) {', '.join(empty)} hold no patient")
    return labels[codes], bounds[codes], bounds[codes + 1]


def _study_classes(patients: "pd.DataFrame", size_bins, study: str,
                   notes: list[str]) -> "pd.DataFrame":
    """``patients`` (one study) with size, size_unit and the ``CLASS_COLUMNS``."""
    import numpy as np

    unit = _size_unit(patients)
    size = patients["tumour_ml" if unit == ML else "tumour_voxels"].where(
        patients["tumour_voxels"] > 0, 0.0)
    patients = patients.assign(size=size, size_unit=unit, size_class=NO_TUMOUR,
                               class_low=0.0, class_high=0.0)
    bearing = (size > 0).to_numpy()
    if unit == VOXELS and patients["tumour_ml"].isna().any():
        notes.append(f"study {study}: sizes in voxels (tumour_ml missing for "
                     f"{int(patients['tumour_ml'].isna().sum())} patient(s): per-case CSVs "
                     "written before the native-space evaluation)")
    if bearing.any():
        classify = _quantile_classes if isinstance(size_bins, int) else _edge_classes
        label, low, high = classify(size[bearing], size_bins, study, notes)
        index = patients.index[bearing]
        patients.loc[index, "size_class"] = label
        patients.loc[index, "class_low"] = np.asarray(low, dtype=float)
        patients.loc[index, "class_high"] = np.asarray(high, dtype=float)
    return patients


def patient_sizes(cases: "pd.DataFrame",
                  size_bins: int | Sequence[float] = 4) -> tuple["pd.DataFrame", list[str]]:
    """``sizes.csv``: one row per (study, dataset, subject_id), ``SIZES_COLUMNS``, and notes.

    A patient's ``tumour_voxels`` and ``tumour_ml`` are the means over its exams of the
    case truths (``case_truths``; ``tumour_ml`` NaN when an exam lacks it), ``n_cases``
    its exams. Classes per study, from its tumour-bearing patients, each counted once.
    """
    import pandas as pd

    bins = check_size_bins(list(size_bins) if not isinstance(size_bins, int) else size_bins)
    truths = case_truths(cases)
    grouped = truths.groupby(list(PATIENT_KEYS), sort=True)
    patients = pd.DataFrame({
        "n_cases": grouped.size(), "tumour_voxels": grouped["tumour_voxels"].mean(),
        "tumour_ml": grouped["tumour_ml"].agg(lambda x: x.mean(skipna=False))}).reset_index()
    notes: list[str] = []
    parts = [_study_classes(rows, bins, study, notes)
             for study, rows in patients.groupby("study", sort=True)]
    return pd.concat(parts, ignore_index=True)[list(SIZES_COLUMNS)], notes


def case_sizes(cases: "pd.DataFrame", sizes: "pd.DataFrame | None" = None,
               size_bins: int | Sequence[float] = 4) -> "pd.DataFrame":
    """``cases.csv``: one row per (study, dataset, case_id), ``CASE_SIZE_COLUMNS``: the
    case's truth (``case_truths``), its size in its patient's unit and its patient's size
    class (the one its rows are tested in). ``sizes``: ``patient_sizes``' table (computed
    with ``size_bins`` when not given)."""
    if sizes is None:
        sizes = patient_sizes(cases, size_bins)[0]
    truths = case_truths(cases)
    frame = truths.merge(sizes[[*PATIENT_KEYS, "size_unit", "size_class"]],
                         on=list(PATIENT_KEYS), how="left", validate="many_to_one")
    in_ml = frame["size_unit"] == ML
    size = frame["tumour_ml"].where(in_ml, frame["tumour_voxels"])
    frame["size"] = size.where(frame["tumour_voxels"] > 0, 0.0)
    return frame[list(CASE_SIZE_COLUMNS)]


def _pair_rows(ident: dict, metric: str, pair: tuple[str, str], values: "pd.DataFrame",
               sizes: "pd.DataFrame") -> "pd.DataFrame":
    """The advantage rows of one group, metric and (CALF loss, baseline) pair."""
    calf, baseline = pair
    frame = values.reset_index()[[SUBJECT_COLUMN, calf, baseline]].rename(
        columns={calf: "calf_value", baseline: "baseline_value"})
    mine = sizes[(sizes["study"] == ident["study"]) & (sizes["dataset"] == ident["dataset"])]
    frame = frame.merge(mine[[SUBJECT_COLUMN, "size", "size_unit", *CLASS_COLUMNS]],
                        on=SUBJECT_COLUMN, how="left", validate="one_to_one")
    if frame["size_class"].isna().any():
        subject = frame.loc[frame["size_class"].isna(), SUBJECT_COLUMN].iloc[0]
        raise CalfError(f"{ident['study']}/{ident['dataset']}: patient {subject} has no row "
                        "in the sizes table")
    frame["diff"] = frame["calf_value"] - frame["baseline_value"]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    frame["advantage"] = sign * frame["diff"]
    return frame.assign(**ident, metric=metric, calf_loss=calf, baseline=baseline)


def patient_advantages(cases: "pd.DataFrame", sizes: "pd.DataFrame",
                       calf_losses: Sequence[str], metrics: Sequence[str],
                       missing: str = "error") -> "pd.DataFrame":
    """``patient_advantage.csv``: one row per (group, metric, CALF loss, baseline,
    patient), ``ADVANTAGE_COLUMNS``.

    Per group (``GROUP_KEYS``) and metric, the patient means of ``row_table`` (every loss
    of the study must have the group's cases, ``missing`` as in ``calf stats``) for each
    pair of a CALF loss the study has and a baseline (every other loss), modalities
    pooled; ``diff`` = CALF - baseline, ``advantage`` = ``diff`` signed so that positive
    favours CALF (``-diff`` for lower-is-better metrics)."""
    import pandas as pd

    from calf.stats.run import check_metrics

    metrics = list(check_metrics(metrics, "analysis.metrics"))
    parts = []
    for study, rows in cases.groupby("study", sort=True):
        losses = ordered(rows["loss"].unique(), LOSS_NAMES)
        tested = [loss for loss in ordered(calf_losses, LOSS_NAMES) if loss in losses]
        pairs = [(c, b) for c in tested for b in losses if b not in tested]
        if not pairs:
            continue
        for key, group in rows.groupby(list(GROUP_KEYS), sort=True):
            ident = dict(zip(GROUP_KEYS, key))
            for metric in metrics:
                wide, _ = row_table(group, metric, losses, missing)
                for pair, table in zip(pairs, patient_tables(wide, pairs)):
                    parts.append(_pair_rows(ident, metric, pair, table.values, sizes))
    if not parts:
        return pd.DataFrame(columns=list(ADVANTAGE_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(ADVANTAGE_COLUMNS)]


def _number(value: object) -> float:
    return math.nan if value is None else float(value)


def training_regimes(profile_paths: Sequence[str | Path],
                     profiles_root: str | Path) -> "pd.DataFrame":
    """``regimes.csv``: one row per training-set profile (``calf.profile.read_profile``),
    ``REGIME_COLUMNS``, identified by its path (``calf.layout.training_key``); S and K NaN
    where undefined, ``tumour_slice_ratio`` = n_tumour_slices / n_slices."""
    import pandas as pd

    from calf.layout import training_key
    from calf.profile import read_profile

    rows = []
    for path in profile_paths:
        study, dataset, variant = training_key(path, profiles_root, ".json")
        record = read_profile(path)
        n_slices = record["n_slices"]
        rows.append({
            "study": study, "dataset": dataset, "ratio": variant.ratio, "fold": variant.fold,
            "n_slices": n_slices, "n_tumour_slices": record["n_tumour_slices"],
            "tumour_slice_ratio": record["n_tumour_slices"] / n_slices if n_slices else math.nan,
            "skewness": _number(record["skewness"]), "kurtosis": _number(record["kurtosis"]),
            "branch": record["branch"], "area_definition": record["area_definition"],
            "source": str(path)})
    frame = pd.DataFrame(rows, columns=list(REGIME_COLUMNS))
    return frame.sort_values(["study", "dataset", "ratio", "fold"], ignore_index=True)
