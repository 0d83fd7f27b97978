"""Patient-grouped folds over slice stores, and tumour-ratio filtered training sets.

Three steps, each a function on DataFrames (``calf split`` is a thin CLI over them):

1. **Cases.** ``read_indexes`` loads the ``index.parquet`` of one or more slice stores (one
   row per image slice, ``row`` = the row's position in its store); ``case_table`` reduces it
   to one row per case with the case's key in the splits file: the bare ``case_id`` for one
   dataset, ``"<dataset>/<case_id>"`` when several datasets are pooled.
2. **Groups and splits.** Every case of one patient falls on one side of every split; with
   a crosswalk (below) so do the cases of one subject found in two releases.
   ``kfold_splits`` (scikit-learn's ``StratifiedGroupKFold``, stratified on dataset and on
   whether the case has tumour slices) and ``holdout_split`` (``GroupShuffleSplit``, the
   authors' single ~90/10 patient-level split) return nnU-Net's ``splits_final.json`` shape:
   a list with one ``{"train": [keys], "val": [keys]}`` per fold.
3. **Training set.** ``training_set`` takes the training slices of one fold and, for a
   ratio r, ``filter_ratio`` keeps every slice of the scarcer group (tumour-present slices,
   area > 0, or tumour-free ones) and a seeded random subset of the other, as large as r
   allows. The subset size is rounded down, as in the authors' code, so
   the subsampled group never exceeds its share. Each image slice (one modality of one
   axial slice) is one sample, as the authors counted them.

Crosswalk files (``calf.crosswalk``) link one subject's IDs across releases; a pool of BraTS
with UPENN-GBM or UCSF-PDGM that no crosswalk links is refused. ``subject_table`` records
the subject of each patient (one ``subject_id`` per linked group, the ``"<dataset>/<patient_id>"``
that sorts first in it), the unit of the statistics: the evaluate step writes it into every
per-case row, so that one person scored in two releases counts once.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from calf._fs import atomic_file, json_text
from calf.crosswalk import (  # noqa: F401 (the crosswalk API, also reachable from here)
    Crosswalk,
    Edge,
    Node,
    crosswalk_edges,
    link_edges,
    load_crosswalk,
    parse_crosswalk_columns,
    read_crosswalk,
)
from calf.defaults import SEED
from calf.errors import CalfError
from calf.layout import ratio_value
from calf.store import INDEX_FILE, read_index

if TYPE_CHECKING:  # pandas stays out of ``import calf.split`` until it is needed
    import pandas as pd

TRAINING_SET_COLUMNS = ("dataset", "row", "case_id", "patient_id", "modality", "slice", "area")
SUBJECT_COLUMNS = ("dataset", "patient_id", "subject_id")


# ----------------------------------------------------------------------------- cases


def split_index(store: str | Path) -> pd.DataFrame:
    """The slice index of one store (``calf.store.read_index``), with ``row`` = each row's
    position in the store.

    Checks what the splits rely on: one dataset per store, a non-empty index, no missing
    area, and one patient per case.
    """
    path = Path(store) / INDEX_FILE
    index = read_index(store)
    if index.empty:
        raise CalfError(f"{path}: index holds no slices")
    index["row"] = range(len(index))
    datasets = sorted(index["dataset"].unique())
    if len(datasets) != 1:
        raise CalfError(f"{path}: one store holds one dataset, found {', '.join(datasets)}")
    if index["area"].isna().any():
        raise CalfError(f"{path}: column 'area' has missing values")
    patients = index.groupby("case_id")["patient_id"].nunique()
    if (patients > 1).any():
        case = patients[patients > 1].index[0]
        raise CalfError(f"{path}: case {case!r} has more than one patient_id")
    return index


def read_indexes(stores: Sequence[str | Path]) -> pd.DataFrame:
    """The slice indexes of several stores, one dataset each, stacked."""
    import pandas as pd

    if not stores:
        raise CalfError("no slice store given")
    indexes = []
    seen: dict[str, Path] = {}
    for store in stores:
        index = split_index(store)
        dataset = index["dataset"].iat[0]
        if dataset in seen:
            raise CalfError(f"{store}: dataset {dataset!r} is already loaded from {seen[dataset]}")
        seen[dataset] = Path(store)
        indexes.append(index)
    return pd.concat(indexes, ignore_index=True)


def case_keys(index: pd.DataFrame) -> pd.Series:
    """The splits-file key of each row of a slice index (pooled when it spans datasets)."""
    pooled = index["dataset"].nunique() > 1
    if pooled:
        return index["dataset"] + "/" + index["case_id"]
    return index["case_id"].copy()


def case_table(index: pd.DataFrame) -> pd.DataFrame:
    """One row per case, sorted by key: ``key, dataset, case_id, patient_id, tumour``.

    ``tumour`` says whether any slice of the case has tumour (area > 0).
    """
    frame = index.assign(key=case_keys(index), tumour=index["area"] > 0)
    cases = frame.groupby("key", sort=True).agg(
        dataset=("dataset", "first"),
        case_id=("case_id", "first"),
        patient_id=("patient_id", "first"),
        tumour=("tumour", "any"),
    )
    return cases.reset_index()


# ------------------------------------------------------------------------- crosswalk


def patient_groups(cases: pd.DataFrame, edges: Sequence[Edge] = ()) -> list[int]:
    """A group label per case: connected components of patients linked by ``edges``.

    Without edges each (dataset, patient) is its own group. Labels count up in the order
    of ``cases``, so they are deterministic.
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    patient_nodes = list(zip(cases["dataset"], cases["patient_id"]))
    ids: dict[Node, int] = {}
    for node in patient_nodes + [n for edge in edges for n in edge]:
        ids.setdefault(node, len(ids))
    rows = np.array([ids[a] for a, _ in edges], dtype=np.int64)
    cols = np.array([ids[b] for _, b in edges], dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    relabel: dict[int, int] = {}
    return [relabel.setdefault(component[ids[n]], len(relabel)) for n in patient_nodes]


# ---------------------------------------------------------------------------- splits


def _check_cases(cases: pd.DataFrame) -> None:
    if "group" not in cases.columns:
        raise ValueError("cases need a 'group' column (see patient_groups)")


def kfold_splits(
    cases: pd.DataFrame, n_folds: int = 5, seed: int = SEED
) -> list[dict[str, list[str]]]:
    """Patient-grouped k-fold cross-validation in ``splits_final.json`` shape.

    ``cases`` is a ``case_table`` with a ``group`` column. Groups never straddle folds;
    folds are balanced in cases and stratified on dataset and tumour presence.
    """
    _check_cases(cases)
    if n_folds < 2:
        raise CalfError(f"folds {n_folds}: cross-validation needs at least 2 folds")
    n_groups = cases["group"].nunique()
    if n_groups < n_folds:
        raise CalfError(
            f"folds {n_folds}: the stores hold only {n_groups} patient(s) "
            f"(linked patients counted once), fewer than the folds"
        )
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    strata = cases["dataset"] + ":" + cases["tumour"].astype(str)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    keys = cases["key"].to_numpy()
    with warnings.catch_warnings():
        # a stratum rarer than the folds (e.g. few tumour-free cases) is fine here
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(splitter.split(np.zeros(len(cases)), strata, groups=cases["group"]))
    return [
        {"train": sorted(keys[train].tolist()), "val": sorted(keys[val].tolist())}
        for train, val in folds
    ]


def holdout_split(
    cases: pd.DataFrame, test_fraction: float = 0.1, seed: int = SEED
) -> list[dict[str, list[str]]]:
    """The authors' single patient-level split: one fold whose ``val`` is the test set.

    The test side holds ``ceil(test_fraction * patients)`` patient groups.
    """
    _check_cases(cases)
    if not 0 < test_fraction < 1:
        raise CalfError(f"holdout {test_fraction}: the test fraction must lie in (0, 1)")
    n_groups = cases["group"].nunique()
    n_test = math.ceil(test_fraction * n_groups)
    if n_test >= n_groups:
        raise CalfError(
            f"holdout {test_fraction}: {n_groups} patient(s) leave no patient for training"
        )
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(cases)), groups=cases["group"]))
    keys = cases["key"].to_numpy()
    return [{"train": sorted(keys[train].tolist()), "val": sorted(keys[val].tolist())}]


def grouped_cases(index: pd.DataFrame, crosswalks: Sequence[Crosswalk] = ()) -> pd.DataFrame:
    """The ``case_table`` of an index with its ``group`` column: patients linked by the
    ``crosswalks`` (``load_crosswalk``) share a group. A pool that mixes BraTS with
    UPENN-GBM or UCSF-PDGM must be linked by them (``check_links``)."""
    cases = case_table(index)
    cases["group"] = patient_groups(cases, link_edges(cases, crosswalks))
    return cases


def split_cases(
    cases: pd.DataFrame, *, folds: int = 5, holdout: float | None = None, seed: int = SEED
) -> list[dict[str, list[str]]]:
    """Folds (or, with ``holdout``, the single split) of a ``grouped_cases`` table."""
    if holdout is not None:
        return holdout_split(cases, holdout, seed)
    return kfold_splits(cases, folds, seed)


def make_splits(
    index: pd.DataFrame,
    *,
    folds: int = 5,
    holdout: float | None = None,
    seed: int = SEED,
    crosswalks: Sequence[Crosswalk] = (),
) -> list[dict[str, list[str]]]:
    """Folds (or, with ``holdout``, the single split) of the cases of a slice index.

    ``crosswalks`` (``load_crosswalk``) link patients across releases; a pool that mixes
    BraTS with UPENN-GBM or UCSF-PDGM must be linked by them (``check_links``).
    """
    return split_cases(grouped_cases(index, crosswalks), folds=folds, holdout=holdout, seed=seed)


# -------------------------------------------------------------------------- subjects


def subject_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per patient of a ``grouped_cases`` table: ``dataset, patient_id, subject_id``.

    ``subject_id`` names the patient's group: the ``"<dataset>/<patient_id>"`` that sorts
    first among its patients, so a patient no crosswalk links is its own
    ``"<dataset>/<patient_id>"``. Sorted by dataset and patient.
    """
    _check_cases(cases)
    name = cases["dataset"] + "/" + cases["patient_id"]
    table = cases.assign(subject_id=name.groupby(cases["group"]).transform("min"))
    table = table[list(SUBJECT_COLUMNS)].drop_duplicates()
    return table.sort_values(["dataset", "patient_id"]).reset_index(drop=True)


def write_subjects(subjects: pd.DataFrame, path: str | Path, force: bool = False) -> Path:
    """Write a ``subject_table`` as CSV atomically; an existing file only with ``force``."""
    return _write_csv(subjects[list(SUBJECT_COLUMNS)], path, force)


def read_subjects(path: str | Path) -> dict[tuple[str, str], str]:
    """A subjects CSV (``write_subjects``) as ``{(dataset, patient_id): subject_id}``.

    Every cell must be filled and a patient listed once.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CalfError(f"{path}: subjects file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CalfError(f"{path}: not a readable subjects CSV ({reason})") from None
    missing = [c for c in SUBJECT_COLUMNS if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in SUBJECT_COLUMNS:
        empty = (table[column].str.strip() == "").to_numpy().nonzero()[0]
        if empty.size:
            raise CalfError(f"{path}: column {column}, row {empty[0] + 2}: empty")
    repeated = table.duplicated(["dataset", "patient_id"], keep="first").to_numpy().nonzero()[0]
    if repeated.size:
        row = table.iloc[repeated[0]]
        raise CalfError(
            f"{path}: row {repeated[0] + 2}: patient {row['dataset']}/{row['patient_id']} "
            "is listed more than once"
        )
    keys = zip(table["dataset"], table["patient_id"])
    return dict(zip(keys, table["subject_id"]))


def validate_splits(splits: object, source: str = "splits") -> list[dict[str, list[str]]]:
    """Check the ``splits_final.json`` shape: folds with disjoint string lists."""
    if not isinstance(splits, list) or not splits:
        raise CalfError(f"{source}: expected a non-empty JSON list of folds")
    for fold, entry in enumerate(splits):
        if not isinstance(entry, dict) or not {"train", "val"} <= set(entry):
            raise CalfError(f"{source}: fold {fold} is not an object with 'train' and 'val'")
        for part in ("train", "val"):
            keys = entry[part]
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise CalfError(f"{source}: fold {fold} '{part}' is not a list of case IDs")
        both = set(entry["train"]) & set(entry["val"])
        if both:
            raise CalfError(f"{source}: fold {fold} has case {sorted(both)[0]!r} in train and val")
    return splits


def read_splits(path: str | Path) -> list[dict[str, list[str]]]:
    """A ``splits_final.json`` file, checked by ``validate_splits``."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalfError(f"{path}: splits file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CalfError(f"{path}: not valid JSON: {err}") from None
    return validate_splits(splits, str(path))


def _fold(splits: Sequence[Mapping[str, list[str]]], fold: int, source: str) -> Mapping:
    if not 0 <= fold < len(splits):
        raise CalfError(f"{source}: no fold {fold} (it has folds 0 to {len(splits) - 1})")
    return splits[fold]


def train_cases(
    splits: Sequence[Mapping[str, list[str]]], fold: int, source: str = "splits"
) -> list[str]:
    """The training case keys of one fold."""
    return list(_fold(splits, fold, source)["train"])


def val_cases(
    splits: Sequence[Mapping[str, list[str]]], fold: int, source: str = "splits"
) -> list[str]:
    """The validation (test) case keys of one fold: what the evaluate step predicts."""
    return list(_fold(splits, fold, source)["val"])


def fold_rows(
    index: pd.DataFrame,
    splits: Sequence[Mapping[str, list[str]]],
    fold: int,
    part: str = "train",
    source: str = "splits",
) -> pd.DataFrame:
    """The slice-index rows of one side (``train`` or ``val``) of one fold.

    The splits must fit the index: every key is a case of the index, every case of the
    index is on one side of the fold, and no patient is on both sides.
    """
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', not {part!r}")
    entry = _fold(splits, fold, source)
    keys = case_keys(index)
    known = set(keys)
    unknown = sorted({k for e in splits for k in (*e["train"], *e["val"])} - known)
    if unknown:
        raise CalfError(
            f"{source}: {len(unknown)} case(s) are not in the slice store(s), e.g. {unknown[0]!r}"
        )
    train, val = set(entry["train"]), set(entry["val"])
    outside = sorted(known - train - val)
    if outside:
        raise CalfError(f"{source}: fold {fold} leaves store case {outside[0]!r} on neither side")
    patient = index["dataset"] + "/" + index["patient_id"]
    leaked = set(patient[keys.isin(train)]) & set(patient[keys.isin(val)])
    if leaked:
        raise CalfError(f"{source}: fold {fold} has patient {sorted(leaked)[0]!r} in train and val")
    return index[keys.isin(train if part == "train" else val)]


# ----------------------------------------------------------------- ratio filtering


def filter_ratio(
    slices: pd.DataFrame, ratio: float | None, seed: int = SEED
) -> pd.DataFrame:
    """Subsample ``slices`` so that tumour slices (area > 0) make up ``ratio`` of them.

    All slices of the scarcer group stay; ``floor`` of what the ratio allows is drawn,
    seeded, from the other. The natural training set (a ratio ``calf.layout.ratio_value``
    reads as None) is returned unchanged. Errors when
    the data cannot meet the ratio. Row order is kept.
    """
    import numpy as np

    ratio = ratio_value(ratio)
    if ratio is None:
        return slices
    tumour = (slices["area"] > 0).to_numpy()
    n_tumour, n_empty = int(tumour.sum()), int((~tumour).sum())
    if n_tumour == 0:
        raise CalfError(f"ratio {ratio}: no tumour slices among the {n_empty} training slices")
    if n_empty == 0:
        raise CalfError(
            f"ratio {ratio}: no tumour-free slices among the {n_tumour} training slices"
        )
    r = Fraction(repr(ratio))  # exact decimal: 0.6 -> 3/5, so floor(30 * 2/3) is 20
    if n_tumour * (1 - r) <= n_empty * r:  # tumour slices are scarce: keep them all
        keep_tumour, keep_empty = n_tumour, math.floor(n_tumour * (1 - r) / r)
    else:  # tumour-free slices are scarce
        keep_tumour, keep_empty = math.floor(n_empty * r / (1 - r)), n_empty
    if keep_tumour == 0 or keep_empty == 0:
        raise CalfError(
            f"ratio {ratio}: {n_tumour} tumour and {n_empty} tumour-free training slices "
            f"would leave {keep_tumour} tumour and {keep_empty} tumour-free slices"
        )
    rng = np.random.default_rng(seed)
    positions = np.arange(len(slices))
    keep = np.concatenate(
        [
            rng.choice(positions[tumour], size=keep_tumour, replace=False),
            rng.choice(positions[~tumour], size=keep_empty, replace=False),
        ]
    )
    return slices.iloc[np.sort(keep)]


def training_set(
    index: pd.DataFrame,
    splits: Sequence[Mapping[str, list[str]]],
    fold: int,
    ratio: float | None = None,
    seed: int = SEED,
    source: str = "splits",
) -> pd.DataFrame:
    """The slices one training run uses: a fold's training rows, ratio-filtered.

    Columns ``TRAINING_SET_COLUMNS`` (``dataset, row, case_id, patient_id, modality, slice,
    area``), sorted by dataset and row.
    """
    rows = fold_rows(index, splits, fold, "train", source)
    rows = rows.sort_values(["dataset", "row"], kind="stable")
    return filter_ratio(rows, ratio, seed)[list(TRAINING_SET_COLUMNS)].reset_index(drop=True)


# -------------------------------------------------------------------------- output


def _write_csv(table: pd.DataFrame, path: str | Path, force: bool) -> Path:
    with atomic_file(path, force=force) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def write_splits(
    splits: Sequence[Mapping[str, list[str]]], path: str | Path, force: bool = False
) -> Path:
    """Write ``splits_final.json`` atomically; an existing file only with ``force``."""
    with atomic_file(path, force=force) as tmp:
        tmp.write_text(json_text(list(splits)))
    return Path(path)


def write_training_set(rows: pd.DataFrame, path: str | Path, force: bool = False) -> Path:
    """Write a training-set CSV (columns ``TRAINING_SET_COLUMNS``) atomically; an existing
    file only with ``force``."""
    return _write_csv(rows, path, force)
