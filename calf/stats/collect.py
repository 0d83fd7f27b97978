"""Read the per-case metric CSVs of a study into one table, and pair its rows across losses.

A metrics file sits at ``<root>/<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK.csv``
(the evaluate step's contract). The path is the source of the run's identity: ``dataset``
is the study's dataset, or the pool's name for a pooled study (whose CSV column
``dataset`` names each case's member dataset, kept here as ``member_dataset``).

Statistics compare losses within a **group**: one study, dataset, model and filter ratio.
Cases are matched on ``(case_id, modality)``; a study with several seeds contributes each
case's mean over its seeds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.evaluate.metrics import METRICS

if TYPE_CHECKING:
    import pandas as pd

METRIC_COLUMNS = METRICS  # the evaluate step's six per-case metrics
# True: larger is better
HIGHER_IS_BETTER = {m: m != "hd95" for m in METRIC_COLUMNS}
TEXT_COLUMNS = ("case_id", "patient_id", "modality", "dataset", "model", "loss")
REQUIRED_COLUMNS = (*TEXT_COLUMNS, "fold", *METRIC_COLUMNS, "tumour_voxels")
GROUP_KEYS = ("study", "dataset", "model", "ratio")
CASE_KEYS = ("case_id", "modality")

# a run below a results root (runs/, metrics/): study/dataset/model/loss/[ratio-R/][seed-N/]foldK
RUN_LAYOUT = (
    r"(?P<study>[^/]+)/(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<loss>[^/]+)/"
    r"(?:ratio-(?P<ratio>[0-9.]+)/)?(?:seed-(?P<seed>[0-9]+)/)?fold(?P<fold>[0-9]+)"
)
_PATH_RE = re.compile(RUN_LAYOUT + r"\.csv")


def parse_metrics_path(path: str | Path, root: str | Path) -> dict[str, object]:
    """study, dataset, model, loss, ratio ('natural' or a number's text), seed, fold of a path."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise CalfError(f"{path}: not under the metrics root {root}") from None
    match = _PATH_RE.fullmatch(rel)
    if match is None:
        raise CalfError(
            f"{path}: not a per-case metrics path "
            "(<root>/<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK.csv)"
        )
    parts = match.groupdict()
    if parts["ratio"] is not None:
        try:
            float(parts["ratio"])
        except ValueError:
            raise CalfError(f"{path}: ratio-{parts['ratio']} is not a number") from None
    return {
        "study": parts["study"],
        "dataset": parts["dataset"],
        "model": parts["model"],
        "loss": parts["loss"],
        "ratio": f"{float(parts['ratio']):g}" if parts["ratio"] else "natural",
        "seed": int(parts["seed"]) if parts["seed"] else None,
        "fold": int(parts["fold"]),
    }


def load_case_metrics(paths: Sequence[str | Path], root: str | Path) -> "pd.DataFrame":
    """One row per case, modality and run: the CSV's columns, identity from the path.

    Columns: ``study, dataset, model, loss, ratio, seed, fold`` (from the path; ``seed``
    nullable), ``case_id, patient_id, modality, member_dataset``, the six metrics (float,
    NaN where the CSV cell is empty), ``tumour_voxels`` and ``source`` (the file).
    """
    import numpy as np
    import pandas as pd

    if not paths:
        raise CalfError("no per-case metrics files given")
    idents = [parse_metrics_path(path, root) for path in paths]
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                                na_values={m: [""] for m in METRIC_COLUMNS})
        except FileNotFoundError:
            raise CalfError(f"{path}: no such file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise CalfError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")
        frames.append(frame[list(REQUIRED_COLUMNS)])
    # checks and identities on the whole table at once (per file they cost 7x the reading)
    cases = pd.concat(frames, ignore_index=True)
    lengths = [len(f) for f in frames]
    file_of = np.repeat(np.arange(len(paths)), lengths)
    starts = np.cumsum([0, *lengths])

    def where(row: int, column: str) -> str:
        return f"{paths[file_of[row]]}: column {column}, row {row - starts[file_of[row]] + 2}"

    for column in (*METRIC_COLUMNS, "tumour_voxels"):
        values = pd.to_numeric(cases[column], errors="coerce")
        bad = (values.isna() & cases[column].notna()).to_numpy().nonzero()[0]
        if bad.size:
            raise CalfError(f"{where(bad[0], column)}: not a number: "
                            f"{cases[column].iloc[bad[0]]!r}")
        cases[column] = values.astype(float)
    path_loss = np.array([i["loss"] for i in idents], dtype=object)[file_of]
    wrong = (cases["loss"].to_numpy(dtype=object) != path_loss).nonzero()[0]
    if wrong.size:
        raise CalfError(f"{where(wrong[0], 'loss')} holds {cases['loss'].iloc[wrong[0]]}, "
                        f"the path says {path_loss[wrong[0]]!r}")
    cases = cases.drop(columns=["fold", "loss"]).rename(columns={"dataset": "member_dataset"})
    for key in idents[0]:
        cases[key] = np.array([i[key] for i in idents], dtype=object)[file_of]
    cases["source"] = np.array([str(p) for p in paths], dtype=object)[file_of]
    cases = cases[[*idents[0], "case_id", "patient_id", "modality", "member_dataset",
                   *METRIC_COLUMNS, "tumour_voxels", "source"]]
    cases["seed"] = cases["seed"].astype("Int64")
    duplicated = cases.duplicated(subset=[*GROUP_KEYS, "seed", "loss", *CASE_KEYS], keep=False)
    if duplicated.any():
        row = cases[duplicated].iloc[0]
        same = (cases[["study", "dataset", "model", "ratio", "loss", *CASE_KEYS]]
                == row[["study", "dataset", "model", "ratio", "loss", *CASE_KEYS]]).all(axis=1)
        files = sorted(set(cases[duplicated & same]["source"]))
        raise CalfError(
            f"case {row['case_id']} ({row['modality']}) appears more than once for loss "
            f"{row['loss']} of {row['dataset']}/{row['model']}: {', '.join(files)}"
        )
    return cases


@dataclass
class Pairing:
    """Rows matched across losses for one group and metric.

    ``values``: one row per ``(case_id, modality)`` kept, one column per loss (seed means).
    ``dropped_missing``: cases dropped because some loss lacks them (``missing="drop"``).
    ``dropped_nan``: cases dropped because some loss's value is NaN.
    """

    values: "pd.DataFrame"
    dropped_missing: list[tuple[str, str]] = field(default_factory=list)
    dropped_nan: list[tuple[str, str]] = field(default_factory=list)


def group_label(group: dict[str, object]) -> str:
    text = f"{group['study']}/{group['dataset']}/{group['model']}"
    return text if group.get("ratio", "natural") == "natural" else f"{text}/ratio-{group['ratio']}"


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
    present["seed"] = present["seed"].fillna(-1)
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
        holder = cases[(cases["case_id"] == case_id) & (cases["modality"] == modality)]["source"].iloc[0]
        seed_text = "" if lacking[1] == -1 else f" (seed {lacking[1]})"
        raise CalfError(
            f"{label}: case {case_id} ({modality}) is in {holder} but missing for loss "
            f"{lacking[0]}{seed_text}; set stats.missing: drop to leave such cases out"
        )
    keep = ~cases.set_index(list(CASE_KEYS)).index.isin(incomplete.index)
    return cases[keep]


def case_table(
    cases: "pd.DataFrame", metric: str, losses: Sequence[str], missing: str
) -> tuple["pd.DataFrame", list[tuple[str, str]]]:
    """Seed-mean values of ``metric`` for one group, NaN rows kept, and the cases dropped.

    Rows ``(case_id, modality)`` (sorted) that every loss has (see ``check_complete``),
    columns ``losses``; a value is the mean over the case's seeds, NaN if any seed's value
    is NaN. Also returns the cases left out as incomplete (``missing="drop"``).
    """
    complete = check_complete(cases, losses, missing)
    dropped_missing = sorted(
        set(cases.set_index(list(CASE_KEYS)).index) - set(complete.set_index(list(CASE_KEYS)).index)
    )
    keys = [complete[k] for k in (*CASE_KEYS, "loss")]
    column = complete[metric]
    means = column.groupby(keys).mean()
    means[column.isna().groupby(keys).any()] = float("nan")
    wide = means.unstack("loss").reindex(columns=list(losses)).sort_index()
    return wide, [tuple(x) for x in dropped_missing]


def pair_metric(cases: "pd.DataFrame", metric: str, losses: Sequence[str], missing: str) -> Pairing:
    """Matched values of ``metric`` for one group: rows ``(case_id, modality)``, columns losses."""
    wide, dropped_missing = case_table(cases, metric, losses, missing)
    nan_rows = wide.isna().any(axis=1)
    return Pairing(
        values=wide[~nan_rows],
        dropped_missing=dropped_missing,
        dropped_nan=[tuple(x) for x in wide.index[nan_rows]],
    )
