"""Read the per-case metric CSVs of a study into one table, and reduce its rows to patients.

A metrics file sits at ``<root>/<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK.csv``
(``calf.layout.RunKey.metrics_csv``). The path is the source of the run's identity: ``dataset``
is the study's dataset, or the pool's name for a pooled study (whose CSV column
``dataset`` names each case's member dataset, kept here as ``member_dataset``).

Statistics compare losses within a **group**: one study, dataset, model and filter ratio
(and, for the statistics' tables, a ``modality``: ``"all"`` or one modality). Rows are
matched across losses on ``(case_id, modality)`` and seed; the unit of every test is the
**subject**, the column ``subject_id`` (``UNIT_KEYS``): the CSV's own, which the evaluate
step takes from the split's subjects table (one ID for a person whose scans are in two
releases of a pool, linked by a crosswalk), or, for a CSV without that column (an older
one, or a user's), ``"<member_dataset>/<patient_id>"`` (two member datasets of a pool may
reuse an ID). ``load_case_metrics`` sets it once; every consumer keys on ``UNIT_KEYS``.
``patient_means`` averages a subject's rows over modalities, then exams (``case_id``), then
seeds, in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.evaluate.metrics import LOWER_IS_BETTER, METRICS
from calf.layout import METRICS_SUFFIX, NATURAL, RunKey, ratio_text

if TYPE_CHECKING:
    import pandas as pd

METRIC_COLUMNS = METRICS  # the evaluate step's per-case metrics
# True: larger is better (distances in mm are smaller-is-better)
HIGHER_IS_BETTER = {m: m not in LOWER_IS_BETTER for m in METRIC_COLUMNS}
TEXT_COLUMNS = ("case_id", "patient_id", "modality", "dataset", "model", "loss")
# every result format has these six metrics
REQUIRED_COLUMNS = (*TEXT_COLUMNS, "fold", "dice", "iou", "hd95", "sensitivity", "specificity",
                    "precision", "tumour_voxels")
# metrics a CSV of an older result format (before NSD and the lesion metrics) lacks: NaN
OPTIONAL_METRICS = tuple(m for m in METRIC_COLUMNS if m not in REQUIRED_COLUMNS)
# kept when a file has it (NaN else): the collapse check of calf.stats.run reads it
OPTIONAL_COUNTS = ("predicted_voxels",)
# the scored grid (calf.evaluate.metrics.GRID_COLUMNS), kept when a file has it (missing
# else, and where a cell is empty): tumour_ml a number, grid_shape and spacing_mm text
OPTIONAL_GRID_NUMBERS = ("tumour_ml",)
OPTIONAL_GRID_TEXT = ("grid_shape", "spacing_mm")
OPTIONAL_GRID = (*OPTIONAL_GRID_NUMBERS, *OPTIONAL_GRID_TEXT)
# the columns checked as numbers (float after reading, NaN where a cell is empty)
NUMBER_COLUMNS = (*METRIC_COLUMNS, "tumour_voxels", *OPTIONAL_COUNTS, *OPTIONAL_GRID_NUMBERS)
GROUP_KEYS = ("study", "dataset", "model", "ratio")
CASE_KEYS = ("case_id", "modality")
# the statistics' groups: GROUP_KEYS and a modality, POOLED for all modalities together
STATS_GROUP_KEYS = (*GROUP_KEYS, "modality")
POOLED = "all"
# a subject (a patient, or patients of several releases linked as one person), unique
# within a pooled study: the CSV's subject_id, else "<member_dataset>/<patient_id>"
SUBJECT_COLUMN = "subject_id"  # optional in a per-case CSV
UNIT_KEYS = (SUBJECT_COLUMN,)
# one row of a loss: a case (exam), modality and seed (NO_SEED when the study has none)
ROW_KEYS = (*UNIT_KEYS, "case_id", "modality", "seed")
NO_SEED = -1

# the columns of load_case_metrics' table, in its order (the first seven from the path)
RUN_IDENTITY = ("study", "dataset", "model", "loss", "ratio", "seed", "fold")
CASE_TABLE_COLUMNS = (*RUN_IDENTITY, "case_id", "patient_id", "modality", "member_dataset",
                      SUBJECT_COLUMN, *METRIC_COLUMNS, "tumour_voxels", *OPTIONAL_COUNTS,
                      *OPTIONAL_GRID, "source")


def _read_metrics_csv(path: str | Path) -> "pd.DataFrame":
    """One per-case metrics CSV as text and float columns, its metrics and counts in
    ``REQUIRED_COLUMNS``' order then the optional ones (NaN where an older file lacks them);
    a CalfError names a missing or unreadable file and missing columns."""
    import numpy as np
    import pandas as pd

    text = (*TEXT_COLUMNS, SUBJECT_COLUMN, *OPTIONAL_GRID_TEXT)
    empty = (*METRIC_COLUMNS, *OPTIONAL_GRID)  # an empty cell: NaN (missing)
    try:
        frame = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False,
                            na_values={c: [""] for c in empty})
    except FileNotFoundError:
        raise CalfError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CalfError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in (*OPTIONAL_METRICS, *OPTIONAL_COUNTS, *OPTIONAL_GRID_NUMBERS):
        if column not in frame.columns:
            frame[column] = np.nan
    for column in OPTIONAL_GRID_TEXT:
        if column not in frame.columns:
            frame[column] = pd.Series(np.nan, index=frame.index, dtype=object)
    optional = [SUBJECT_COLUMN] if SUBJECT_COLUMN in frame.columns else []
    return frame[[*REQUIRED_COLUMNS, *OPTIONAL_METRICS, *OPTIONAL_COUNTS, *OPTIONAL_GRID,
                  *optional]]


def load_case_metrics(paths: Sequence[str | Path], root: str | Path) -> "pd.DataFrame":
    """One row per case, modality and run: the CSV's columns, identity from the path.

    Columns: ``study, dataset, model, loss, ratio, seed, fold`` (from the path; ``seed``
    nullable), ``case_id, patient_id, modality, member_dataset, subject_id`` (the CSV's, or
    ``"<member_dataset>/<patient_id>"`` for a file without the column), every metric of
    ``METRIC_COLUMNS`` (float, NaN where the CSV cell is empty or, for a file of an older
    format, the column is missing), ``tumour_voxels``, ``predicted_voxels`` (NaN for a file
    without it), the scored grid ``tumour_ml`` (float), ``grid_shape`` and ``spacing_mm``
    (text such as ``"240x240x155"`` and ``"1x1x1"``; all three missing, NaN, for a file
    without them or an empty cell) and ``source`` (the file).
    """
    import numpy as np
    import pandas as pd

    if not paths:
        raise CalfError("no per-case metrics files given")
    # study, dataset, model, loss, ratio (calf.layout.ratio_text), seed, fold
    idents = [RunKey.from_path(path, METRICS_SUFFIX, root).as_dict() for path in paths]
    frames = [_read_metrics_csv(path) for path in paths]
    # checks and identities on the whole table at once (per file they cost 7x the reading)
    cases = pd.concat(frames, ignore_index=True)
    if SUBJECT_COLUMN not in cases.columns:
        cases[SUBJECT_COLUMN] = pd.Series(np.nan, index=cases.index, dtype=object)
    lengths = [len(f) for f in frames]
    file_of = np.repeat(np.arange(len(paths)), lengths)
    starts = np.cumsum([0, *lengths])

    def where(row: int, column: str) -> str:
        return f"{paths[file_of[row]]}: column {column}, row {row - starts[file_of[row]] + 2}"

    path_loss = np.array([i["loss"] for i in idents], dtype=object)[file_of]
    _check_cells(cases, path_loss, where)
    cases = cases.drop(columns=["fold", "loss"]).rename(columns={"dataset": "member_dataset"})
    # the unit: the CSV's subject, else the patient within its member dataset
    own = cases["member_dataset"] + "/" + cases["patient_id"]
    cases[SUBJECT_COLUMN] = cases[SUBJECT_COLUMN].where(cases[SUBJECT_COLUMN].notna(), own)
    for key in idents[0]:
        cases[key] = np.array([i[key] for i in idents], dtype=object)[file_of]
    cases["source"] = np.array([str(p) for p in paths], dtype=object)[file_of]
    cases = cases[list(CASE_TABLE_COLUMNS)]
    cases["seed"] = cases["seed"].astype("Int64")
    _check_unique(cases)
    return cases


def _check_cells(cases: "pd.DataFrame", path_loss, where) -> None:
    """Make the metric and count columns of the read CSVs float, in place; a CalfError
    (``where(row, column)`` names the file, column and row) for a cell that is not a number,
    a loss other than its path's (``path_loss``, per row), an empty ID or modality, and the
    reserved modality ``POOLED``."""
    import pandas as pd

    for column in NUMBER_COLUMNS:
        values = pd.to_numeric(cases[column], errors="coerce")
        bad = (values.isna() & cases[column].notna()).to_numpy().nonzero()[0]
        if bad.size:
            raise CalfError(f"{where(bad[0], column)}: not a number: "
                            f"{cases[column].iloc[bad[0]]!r}")
        cases[column] = values.astype(float)
    wrong = (cases["loss"].to_numpy(dtype=object) != path_loss).nonzero()[0]
    if wrong.size:
        raise CalfError(f"{where(wrong[0], 'loss')} holds {cases['loss'].iloc[wrong[0]]}, "
                        f"the path says {path_loss[wrong[0]]!r}")
    for column in ("case_id", "patient_id", "modality", SUBJECT_COLUMN):
        empty = (cases[column].str.strip() == "").to_numpy().nonzero()[0]
        if empty.size:
            raise CalfError(f"{where(empty[0], column)}: empty")
    reserved = (cases["modality"] == POOLED).to_numpy().nonzero()[0]
    if reserved.size:
        raise CalfError(f"{where(reserved[0], 'modality')}: {POOLED!r} is reserved for the "
                        "statistics' pooled-modality groups")


def _check_unique(cases: "pd.DataFrame") -> None:
    """A CalfError naming the files when a case (and modality) appears twice for one run."""
    duplicated = cases.duplicated(subset=[*GROUP_KEYS, "seed", "loss", *CASE_KEYS], keep=False)
    if duplicated.any():
        row = cases[duplicated].iloc[0]
        keys = [*GROUP_KEYS, "loss", *CASE_KEYS]
        same = (cases[keys] == row[keys]).all(axis=1)
        files = sorted(set(cases[duplicated & same]["source"]))
        raise CalfError(
            f"case {row['case_id']} ({row['modality']}) appears more than once for loss "
            f"{row['loss']} of {row['dataset']}/{row['model']}: {', '.join(files)}"
        )


def group_label(group: dict[str, object]) -> str:
    text = f"{group['study']}/{group['dataset']}/{group['model']}"
    ratio = ratio_text(group.get("ratio"))
    return text if ratio == NATURAL else f"{text}/ratio-{ratio}"


def check_complete(cases: "pd.DataFrame", losses: Sequence[str], missing: str) -> "pd.DataFrame":
    """The rows of one group whose case every loss (and seed) has.

    ``missing="error"``: a case present for one loss but not another raises, naming the
    case, the loss that lacks it and a file that has it. ``"drop"``: such cases are removed.
    """
    if missing not in ("error", "drop"):
        raise CalfError(f"stats.missing: {missing!r}, expected 'error' or 'drop'")
    if cases.empty:
        raise CalfError("no per-case rows to compare (every metrics file is empty)")
    first = cases.iloc[0]
    label = group_label(first.to_dict())
    present = cases[[*CASE_KEYS, "loss", "seed"]].copy()
    present["seed"] = present["seed"].fillna(NO_SEED)
    runs = present[["loss", "seed"]].drop_duplicates()
    absent_losses = sorted(set(losses) - set(present["loss"]))
    if absent_losses:
        raise CalfError(f"{label}: no metrics file for loss(es) {', '.join(absent_losses)}")
    counts = present.groupby(list(CASE_KEYS)).size()
    incomplete = counts[counts < len(runs)]
    if incomplete.empty:
        return cases
    if missing == "error":
        case_id, modality = incomplete.index[0]
        mine = present[(present["case_id"] == case_id) & (present["modality"] == modality)]
        have = set(zip(mine["loss"], mine["seed"]))
        lacking = next((loss, seed) for loss, seed in runs.itertuples(index=False)
                       if (loss, seed) not in have)
        same_case = (cases["case_id"] == case_id) & (cases["modality"] == modality)
        holder = cases.loc[same_case, "source"].iloc[0]
        seed_text = "" if lacking[1] == NO_SEED else f" (seed {lacking[1]})"
        raise CalfError(
            f"{label}: case {case_id} ({modality}) is in {holder} but missing for loss "
            f"{lacking[0]}{seed_text}; set stats.missing: drop to leave such cases out"
        )
    keep = ~cases.set_index(list(CASE_KEYS)).index.isin(incomplete.index)
    return cases[keep]


def check_patients(cases: "pd.DataFrame") -> None:
    """Every case of one group belongs to one subject: a case whose subject (``UNIT_KEYS``)
    differs between files raises, naming the case and two files (e.g. a file with
    subject_id from the subjects table beside an older one without it)."""
    keys = cases[["case_id", *UNIT_KEYS]].drop_duplicates()
    split = keys["case_id"].duplicated(keep=False)
    if split.any():
        case_id = keys.loc[split, "case_id"].iloc[0]
        mine = cases[cases["case_id"] == case_id].drop_duplicates(list(UNIT_KEYS))
        a, b = mine.iloc[0], mine.iloc[1]
        raise CalfError(
            f"{group_label(a.to_dict())}: case {case_id} belongs to patient "
            f"{'/'.join(a[list(UNIT_KEYS)])} in {a['source']} but to "
            f"{'/'.join(b[list(UNIT_KEYS)])} in {b['source']}"
        )


def row_table(
    cases: "pd.DataFrame", metric: str, losses: Sequence[str], missing: str
) -> tuple["pd.DataFrame", list[tuple[str, str]]]:
    """One group's values of ``metric``: a row per (case, modality, seed), a column per loss.

    Index ``ROW_KEYS`` (sorted; ``seed`` is ``NO_SEED`` when the study has none), columns
    ``losses``, NaN kept. Only cases every loss (and seed) has are kept (see
    ``check_complete``); also returns the ``(case_id, modality)`` left out as incomplete
    (``missing="drop"``).
    """
    complete = check_complete(cases, losses, missing)
    check_patients(complete)
    dropped_missing = [] if len(complete) == len(cases) else sorted(
        set(cases.set_index(list(CASE_KEYS)).index) - set(complete.set_index(list(CASE_KEYS)).index)
    )
    wide = indexed_rows(complete, [metric], after=["loss"])[metric].unstack("loss")
    wide = wide.reindex(columns=list(losses)).sort_index()
    wide.columns.name = None
    return wide, [tuple(x) for x in dropped_missing]


def indexed_rows(cases: "pd.DataFrame", columns: Sequence[str], before: Sequence[str] = (),
                 after: Sequence[str] = ()) -> "pd.DataFrame":
    """``columns`` of ``cases`` indexed by ``[*before, *ROW_KEYS, *after]`` (seed ``NO_SEED``
    where the study has none), the form ``patient_means`` takes."""
    keys = [*before, *ROW_KEYS, *after]
    frame = cases[list(dict.fromkeys([*keys, *columns]))]
    frame = frame.assign(seed=frame["seed"].fillna(NO_SEED).astype(int))
    return frame.set_index(keys)[list(columns)]


def patient_means(rows: "pd.DataFrame", by: Sequence[str] = ()) -> "pd.DataFrame":
    """Each patient's (subject's, ``UNIT_KEYS``) mean of every value column: over
    modalities, then exams, then seeds.

    ``rows``: indexed by ``[*by, *ROW_KEYS]`` (``by``: e.g. the group keys), one column per
    value. First the mean over a (patient, exam, seed)'s modalities, then over a (patient,
    seed)'s exams (``case_id``), then over the patient's seeds, so that a patient with a
    follow-up exam or an extra modality still counts once. NaN values are left out of each
    mean, column by column; a patient without any value is NaN. Index ``[*by, *UNIT_KEYS]``.
    """
    by = list(by)
    exams = rows.groupby(level=[*by, *UNIT_KEYS, "case_id", "seed"], sort=True).mean()
    seeds = exams.groupby(level=[*by, *UNIT_KEYS, "seed"], sort=True).mean()
    return seeds.groupby(level=[*by, *UNIT_KEYS], sort=True).mean()


@dataclass
class PatientTable:
    """One comparison's patient means: the same rows for every loss it compares.

    ``values``: one row per patient (index ``UNIT_KEYS``), one column per loss, no NaN.
    ``n_rows``: the (case, modality, seed) rows averaged into them; ``n_dropped_nan``: rows
    left out because some compared loss's value is NaN; ``n_patients_dropped_nan``: patients
    left with no row by that.
    """

    values: "pd.DataFrame"
    n_rows: int
    n_dropped_nan: int
    n_patients_dropped_nan: int

    @property
    def n_patients(self) -> int:
        return len(self.values)


def patient_table(wide: "pd.DataFrame", losses: Sequence[str]) -> PatientTable:
    """The patient means of ``losses`` from a ``row_table``: a row NaN for any of
    ``losses`` is left out for all of them before averaging (so each side of a paired test
    averages the same rows), then ``patient_means``."""
    part = wide[list(losses)]
    nan = part.isna().any(axis=1).to_numpy()
    kept = part[~nan]
    values = patient_means(kept) if len(kept) else kept.droplevel(["case_id", "modality", "seed"])
    patients = wide.index.droplevel(["case_id", "modality", "seed"]).unique()
    return PatientTable(values=values, n_rows=int(len(kept)), n_dropped_nan=int(nan.sum()),
                        n_patients_dropped_nan=int(len(patients) - len(values)))


def patient_tables(wide: "pd.DataFrame",
                   comparisons: Sequence[Sequence[str]]) -> list[PatientTable]:
    """``patient_table(wide, losses)`` for each ``losses`` of ``comparisons``; when no value
    of ``wide`` is NaN, every comparison averages all rows, so the means are taken once."""
    if wide.isna().to_numpy().any():
        return [patient_table(wide, losses) for losses in comparisons]
    full = patient_table(wide, list(wide.columns))
    return [PatientTable(full.values[list(losses)], full.n_rows, 0, 0) for losses in comparisons]


def pooled_groups(table: "pd.DataFrame", name: str) -> "pd.DataFrame":
    """The rows of a statistics table (paired, friedman, ranks, nemenyi) whose group pools
    all modalities (``modality == "all"``); a table without the column raises."""
    if "modality" not in table.columns:
        raise CalfError(f"{name}: missing column modality (written by an older calf stats; "
                        "run calf stats again)")
    return table[table["modality"].astype(str) == POOLED]
