"""A study's significance tests as four tables, and their atomic writing (``calf stats``).

``compute_stats`` takes the rows of ``calf.stats.collect.load_case_metrics`` and returns a
``StudyStats``: per group (study, dataset, model, ratio, modality: ``"all"`` pools the
modalities; ``by_modality`` adds a group per modality), with the **patient** as the unit of
every test (keyed on its subject, ``calf.stats.collect.UNIT_KEYS``, so that one person linked
across the releases of a pool counts once; each metric averaged per patient over
modalities, then exams, then seeds; ``calf.stats.collect.patient_means``):

- ``paired``: every CALF loss against every baseline on each metric (Wilcoxon signed-rank
  test on the patients' means, Holm over the declared family, rank-biserial effect size,
  median difference with a seeded bootstrap CI);
- ``friedman``: the Friedman test over all losses with patients as blocks, Iman-Davenport's
  F, Nemenyi's critical difference;
- ``ranks``: each loss's mean rank (1 = best), mean and median over the same patients;
- ``nemenyi``: the Nemenyi post-hoc p-value of every pair of losses;

plus ``handling``, one sentence for each choice that shapes the numbers (the unit, missing
cases, NaN metrics, ties, zero differences, the groups, the multiple-testing family).
``collapsed_runs`` names the runs whose model collapsed (predicted nothing, or nearly
everything, on every case), recorded in ``stats.json`` as ``runs_collapsed`` for the report.
``write_stats`` writes ``paired.csv``, ``friedman.csv``, ``ranks.csv``, ``nemenyi.csv`` and
``stats.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

from calf._json import json_safe
from calf.errors import CalfError
from calf.naming import CALF_LOSSES, LOSS_NAMES, ordered
from calf.stats.collect import (
    GROUP_KEYS,
    HIGHER_IS_BETTER,
    METRIC_COLUMNS,
    NO_SEED,
    POOLED,
    STATS_GROUP_KEYS,
    check_complete,
    group_label,
    patient_tables,
    row_table,
)
from calf.stats.paired import ZERO_METHODS

if TYPE_CHECKING:
    import pandas as pd

FORMAT = 1
FAMILIES = ("group", "study")
MISSING = ("error", "drop")
DEFAULT_CALF_LOSSES = CALF_LOSSES

# n_patients: the test's N; n_rows: the (case, modality, seed) rows averaged into them;
# n_dropped_missing: (case, modality) left out as incomplete; n_dropped_nan: rows left out
# for a NaN; n_patients_dropped_nan: patients left without a row by that
UNIT_COLUMNS = ("n_patients", "n_rows", "n_dropped_missing", "n_dropped_nan",
                "n_patients_dropped_nan")
PAIRED_COLUMNS = (*STATS_GROUP_KEYS, "metric", "calf_loss", "baseline", *UNIT_COLUMNS,
                  "n_zero_diff", "mean_calf", "mean_baseline", "median_diff",
                  "ci_low", "ci_high", "statistic", "p_value", "p_holm", "significant",
                  "rank_biserial", "favours", "family", "family_size", "method")
FRIEDMAN_COLUMNS = (*STATS_GROUP_KEYS, "metric", *UNIT_COLUMNS, "k",
                    "chi2", "p_value", "iman_davenport_f", "iman_davenport_p", "alpha",
                    "q_alpha", "cd")
RANKS_COLUMNS = (*STATS_GROUP_KEYS, "metric", "loss", "mean_rank", "mean", "median")
NEMENYI_COLUMNS = (*STATS_GROUP_KEYS, "metric", "loss_a", "loss_b", "p_value", "rank_diff",
                   "significant")
TABLES = {"paired": PAIRED_COLUMNS, "friedman": FRIEDMAN_COLUMNS, "ranks": RANKS_COLUMNS,
          "nemenyi": NEMENYI_COLUMNS}
OUTPUT_FILES = (*(f"{name}.csv" for name in TABLES), "stats.json")
# a run (one metrics file) and what identifies it in runs_collapsed
RUN_KEYS = ("dataset", "model", "loss", "ratio", "seed", "fold")
# "nearly everything": at most this share of each case's background left unpredicted
NEARLY_ALL_SPECIFICITY = 0.01


@dataclass
class StudyStats:
    """The four tables of one study, the settings that made them and how data were handled.

    ``notes``: tests that could not run and why (also in ``stats.json``).
    """

    study: str
    settings: dict[str, object]
    handling: dict[str, str]
    paired: "pd.DataFrame"
    friedman: "pd.DataFrame"
    ranks: "pd.DataFrame"
    nemenyi: "pd.DataFrame"
    notes: list[str] = field(default_factory=list)
    runs_collapsed: list[dict[str, object]] = field(default_factory=list)


def handling_text(*, missing: str, zero_method: str, family: str, alpha: float,
                  resamples: int, seed: int, by_modality: bool) -> dict[str, str]:
    """One sentence per choice that shapes the numbers, for stats.json and the README."""
    missing_text = (
        "A case (case_id, modality) that one loss (or seed) of a group has and another lacks "
        "stops the step with an error naming the case, the loss and a file that has it."
        if missing == "error" else
        "A case (case_id, modality) that one loss (or seed) of a group has and another lacks "
        "is left out of all of that group's tests (missing: drop); n_dropped_missing counts them."
    )
    zero_text = {
        "wilcox": "zero differences are left out of the ranking and the test (zero_method "
                  "wilcox, Wilcoxon's original treatment)",
        "pratt": "zero differences are ranked with the others and then left out of both rank "
                 "sums (zero_method pratt)",
        "zsplit": "zero differences are ranked with the others and their ranks split half to "
                  "R+ and half to R- (zero_method zsplit)",
    }[zero_method]
    family_text = {
        "group": "every test of one group (study, dataset, model, ratio, modality): all CALF "
                 "losses x baselines x metrics",
        "study": "every test of the study with the same modality key: all of its groups x "
                 "CALF losses x baselines x metrics",
    }[family]
    groups_text = (
        "Each group is one dataset, model and filter ratio with modality 'all' (its "
        "modalities pooled in the patient means)"
        + ("; by_modality adds one group per modality, where a patient's value is the mean "
           "of that modality's rows over exams, then seeds; the per-modality groups form "
           "Holm families of their own, so they leave the 'all' groups' results unchanged"
           if by_modality else "; by_modality is off: no per-modality groups")
    )
    return {
        "unit": "The unit of every test is the patient, keyed on the per-case CSV's "
                "subject_id: the split's subject of the patient, one ID for a person whose "
                "scans are in two releases of a pooled study (linked by a crosswalk), so that "
                "both copies count once; a CSV without that column (written by an older calf "
                "evaluate, or by hand) falls back to (member_dataset, patient_id), so that two "
                "member datasets of a pooled study reusing an ID stay two patients. Before the "
                "paired Wilcoxon tests, the Friedman test, mean ranks, "
                "the Nemenyi test and the critical difference, each metric is averaged per "
                "patient: first over the modalities of an exam (case_id) and seed, then over "
                "the patient's exams within a seed, then over seeds, in that order; N "
                "(n_patients) is the number of patients, n_rows the (case, modality, seed) "
                "rows averaged.",
        "missing": missing_text,
        "nan": "A (case, modality, seed) row whose metric is NaN for a loss (e.g. precision "
               "when nothing is predicted, as the evaluation's conventions define) is left "
               "out for every loss of that comparison before the patient means (both losses "
               "of a paired test; all losses for the Friedman test, ranks and Nemenyi test), "
               "so that every loss averages the same rows; n_dropped_nan counts the rows, "
               "n_patients_dropped_nan the patients left without any row.",
        "ties": "Tied values share the average of their ranks (Wilcoxon |d| ranks and the "
                "Friedman within-patient ranks); with ties or zeros scipy's Wilcoxon test uses "
                "the normal approximation with its tie-corrected variance (or, up to 13 "
                "pairs, the fully enumerated permutation distribution), and the Friedman "
                "chi2 is scipy's, tie-corrected (Demšar's formula has no tie correction); "
                "the median CI is a percentile bootstrap, which ties do not break.",
        "zero_differences": f"In the Wilcoxon test and the rank-biserial correlation "
                            f"r = (R+ - R-) / (R+ + R-), {zero_text}; when every difference is "
                            f"zero there is no test: p = 1, statistic NaN, r = 0, CI [0, 0], "
                            f"method 'all zero'.",
        "groups": groups_text + ".",
        "family": f"Holm's step-down correction (statsmodels multipletests, method 'holm', "
                  f"not its default Holm-Sidak) runs over {family_text}; tests that could not "
                  f"run (NaN p) are outside the family; significant = p_holm < {alpha:g}. "
                  f"Median-difference CIs: percentile bootstrap, {resamples} resamples, "
                  f"seeded with {seed} and each test's identity.",
    }


def _order_losses(losses) -> list[str]:
    return ordered(losses, LOSS_NAMES)


def _check_metrics(metrics: Sequence[str], option: str) -> list[str]:
    for metric in metrics:
        if metric not in METRIC_COLUMNS:
            raise CalfError(f"{option} {metric!r}: unknown metric, expected one of "
                            f"{', '.join(METRIC_COLUMNS)}")
    return list(dict.fromkeys(metrics))


def _test_rng(seed: int, identity: Sequence[object]):
    """A generator for one test's resamples: the seed plus a checksum of the test's
    identity, so a CI does not depend on which other tests were computed."""
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, identity)).encode())])


def _favours(r: float, higher_is_better: bool, calf: str, baseline: str) -> str:
    if math.isnan(r) or r == 0:
        return "neither"
    return calf if (r > 0) == higher_is_better else baseline


def _friedman_row(values, alpha: float, label: str, metric: str, notes: list[str]) -> dict:
    """The Friedman test of one (patients x losses) table and Nemenyi's critical difference."""
    from calf.stats.friedman import critical_difference, friedman_test

    test = friedman_test(values)
    if test.note:
        notes.append(f"{label} {metric}: {test.note}")
    q, cd = critical_difference(test.k, test.n_blocks, alpha)
    return {"k": test.k, "chi2": test.chi2, "p_value": test.p_value,
            "iman_davenport_f": test.iman_davenport_f,
            "iman_davenport_p": test.iman_davenport_p, "alpha": alpha, "q_alpha": q, "cd": cd}


def _rank_rows(values, losses: Sequence[str], higher_is_better: bool) -> list[dict]:
    """Each loss's mean rank (1 = best), mean and median over the table's patients."""
    import numpy as np

    from calf.stats.friedman import mean_ranks

    if not len(values):
        return [{"loss": loss, "mean_rank": math.nan, "mean": math.nan, "median": math.nan}
                for loss in losses]
    ranks = mean_ranks(values, higher_is_better)
    return [{"loss": loss, "mean_rank": float(ranks[j]), "mean": float(values[:, j].mean()),
             "median": float(np.median(values[:, j]))} for j, loss in enumerate(losses)]


def _nemenyi_rows(values, losses: Sequence[str], higher_is_better: bool,
                  alpha: float) -> list[dict]:
    """Every unordered pair of losses: Nemenyi p (NaN for k < 3 or fewer than 2 patients),
    rank_diff = mean rank of loss_a minus that of loss_b."""
    import numpy as np

    from calf.stats.friedman import MIN_BLOCKS, MIN_LOSSES, mean_ranks, nemenyi

    n, k = values.shape
    defined = k >= MIN_LOSSES and n >= MIN_BLOCKS
    p_matrix = nemenyi(values) if defined else np.full((k, k), np.nan)
    ranks = mean_ranks(values, higher_is_better) if n else np.full(k, np.nan)
    return [{"loss_a": losses[i], "loss_b": losses[j], "p_value": float(p_matrix[i, j]),
             "rank_diff": float(ranks[i] - ranks[j]), "significant": bool(p_matrix[i, j] < alpha)}
            for i, j in combinations(range(k), 2)]


def _unit_counts(table, dropped_missing) -> dict[str, int]:
    return {"n_patients": table.n_patients, "n_rows": table.n_rows,
            "n_dropped_missing": len(dropped_missing), "n_dropped_nan": table.n_dropped_nan,
            "n_patients_dropped_nan": table.n_patients_dropped_nan}


def modality_groups(group: "pd.DataFrame", by_modality: bool):
    """(modality key, rows) of one group: ``"all"`` with every row, then (``by_modality``)
    each modality's rows, sorted by name."""
    yield POOLED, group
    if by_modality:
        for modality, rows in group.groupby("modality", sort=True):
            yield modality, rows


def stats_label(ident: dict[str, object]) -> str:
    """A statistics group in notes and Holm family names: the group label, plus
    ``/modality-M`` for a per-modality group."""
    label = group_label(ident)
    return label if ident["modality"] == POOLED else f"{label}/modality-{ident['modality']}"


def _family_name(family: str, label: str, study: str, modality: str) -> str:
    """The Holm family of a test: its group (``family="group"``), or the study, a
    per-modality group's tests forming a family of their own per modality."""
    if family == "group":
        return label
    return study if modality == POOLED else f"{study}/modality-{modality}"


def compute_stats(
    cases: "pd.DataFrame",
    *,
    study: str,
    calf_losses: Sequence[str] = DEFAULT_CALF_LOSSES,
    metrics: Sequence[str] = ("dice", "hd95"),
    friedman_metrics: Sequence[str] = ("dice", "hd95"),
    alpha: float = 0.05,
    family: str = "group",
    missing: str = "error",
    zero_method: str = "wilcox",
    resamples: int = 2000,
    seed: int = 12345,
    by_modality: bool = False,
    scoring: str | None = None,
) -> StudyStats:
    """The four tables of ``study`` from its per-case rows (see the module docstring).

    ``calf_losses``: those the study has are tested against every other loss; with none
    present there are no paired tests (a note says so) and the Friedman test still runs.
    ``by_modality``: also one group per modality (patients again the unit).
    ``scoring``: where and how the metrics were computed (``scoring_summary`` of the
    metrics files' companions), recorded in the settings.
    Raises ``CalfError`` for an unknown metric or option, a study without rows, a case
    assigned to two patients, and (``missing="error"``) a case some loss lacks.
    """
    import numpy as np
    import pandas as pd

    from calf.stats.paired import holm, paired_test

    metrics = _check_metrics(metrics, "metric")
    friedman_metrics = _check_metrics(friedman_metrics, "friedman metric")
    if family not in FAMILIES:
        raise CalfError(f"family {family!r}: expected one of {', '.join(FAMILIES)}")
    if missing not in MISSING:
        raise CalfError(f"missing {missing!r}: expected one of {', '.join(MISSING)}")
    if zero_method not in ZERO_METHODS:
        raise CalfError(f"zero_method {zero_method!r}: expected one of {', '.join(ZERO_METHODS)}")
    if not 0 < alpha < 1:
        raise CalfError(f"alpha {alpha!r}: expected a number in (0, 1)")
    if resamples < 1:
        raise CalfError(f"resamples {resamples!r}: expected a positive number")

    rows = cases[cases["study"] == study]
    if rows.empty:
        studies = ", ".join(sorted(set(cases["study"]))) or "none"
        raise CalfError(f"study {study!r}: no per-case rows (the files hold study {studies})")
    losses = _order_losses(rows["loss"].unique())
    tested = [loss for loss in _order_losses(calf_losses) if loss in losses]
    paired_rows, friedman_rows, rank_rows, nemenyi_rows, notes = [], [], [], [], []
    if not tested:
        # e.g. a study of new baselines only: nothing to pair, the Friedman test still runs
        asked = ", ".join(calf_losses) or "none asked for"
        notes.append(f"study {study!r} has no CALF loss ({asked}); "
                     f"its losses: {', '.join(losses)}: no paired tests")
    baselines = [loss for loss in losses if loss not in tested]
    settings = {"calf_losses": tested, "baselines": baselines, "losses": losses,
                "metrics": metrics, "friedman_metrics": friedman_metrics, "alpha": alpha,
                "family": family, "missing": missing, "zero_method": zero_method,
                "resamples": resamples, "seed": seed, "by_modality": by_modality,
                "unit": "subject_id (else member_dataset/patient_id)",
                "scoring": scoring,
                "averaging": ["modality", "case_id", "seed"],
                "bootstrap_method": "percentile",
                "confidence_level": 0.95, "wilcoxon_alternative": "two-sided",
                "nemenyi": "scikit_posthocs.posthoc_nemenyi_friedman",
                "holm": "statsmodels.stats.multitest.multipletests(method='holm')"}

    for key, whole in rows.groupby(list(GROUP_KEYS), sort=True):
        # every loss of the study must have run in every group; with missing="error" a
        # case some loss lacks stops here, before any test
        check_complete(whole, losses, missing)
        for modality, group in modality_groups(whole, by_modality):
            ident = {**dict(zip(GROUP_KEYS, key)), "modality": modality}
            label = stats_label(ident)
            for metric in dict.fromkeys([*metrics, *friedman_metrics]):
                # one row table per metric: every test of a group starts from the same rows
                wide, dropped_missing = row_table(group, metric, losses, missing)
                pairs = [(c, b) for c in tested for b in baselines] if metric in metrics else []
                tables = patient_tables(wide, [*pairs, losses])
                for (calf, baseline), table in zip(pairs, tables):
                    identity = (*key, *([] if modality == POOLED else [modality]),
                                metric, calf, baseline)
                    result = paired_test(
                        table.values[calf].to_numpy(), table.values[baseline].to_numpy(),
                        zero_method=zero_method, resamples=resamples,
                        rng=_test_rng(seed, identity))
                    if math.isnan(result.p_value):
                        notes.append(f"{label} {metric} {calf} vs {baseline}: {result.method}")
                    numbers = result.as_dict()
                    numbers.pop("n_pairs")  # = n_patients
                    paired_rows.append({
                        **ident, "metric": metric, "calf_loss": calf, "baseline": baseline,
                        **_unit_counts(table, dropped_missing), **numbers,
                        "favours": _favours(result.rank_biserial, HIGHER_IS_BETTER[metric],
                                            calf, baseline),
                        "family": _family_name(family, label, study, modality),
                    })
                if metric in friedman_metrics:
                    table = tables[-1]
                    values = table.values.to_numpy(dtype=float)
                    higher = HIGHER_IS_BETTER[metric]
                    friedman_rows.append({**ident, "metric": metric,
                                          **_unit_counts(table, dropped_missing),
                                          **_friedman_row(values, alpha, label, metric, notes)})
                    rank_rows += [{**ident, "metric": metric, **row}
                                  for row in _rank_rows(values, losses, higher)]
                    nemenyi_rows += [{**ident, "metric": metric, **row}
                                     for row in _nemenyi_rows(values, losses, higher, alpha)]

    paired = pd.DataFrame(paired_rows, columns=list(PAIRED_COLUMNS))
    if not paired.empty:
        family_key = paired["family"]
        paired["p_holm"] = np.nan
        paired["family_size"] = 0
        for _, index in paired.groupby(family_key, sort=False).groups.items():
            p = paired.loc[index, "p_value"].to_numpy(dtype=float)
            paired.loc[index, "p_holm"] = holm(p)
            paired.loc[index, "family_size"] = int((~np.isnan(p)).sum())
        paired["significant"] = (paired["p_holm"] < alpha).astype(bool)
        paired["family_size"] = paired["family_size"].astype(int)
    return StudyStats(
        study=study,
        settings=settings,
        handling=handling_text(missing=missing, zero_method=zero_method, family=family,
                               alpha=alpha, resamples=resamples, seed=seed,
                               by_modality=by_modality),
        paired=paired,
        friedman=pd.DataFrame(friedman_rows, columns=list(FRIEDMAN_COLUMNS)),
        ranks=pd.DataFrame(rank_rows, columns=list(RANKS_COLUMNS)),
        nemenyi=pd.DataFrame(nemenyi_rows, columns=list(NEMENYI_COLUMNS)),
        notes=notes,
        runs_collapsed=collapsed_runs(rows),
    )


def collapsed_runs(cases: pd.DataFrame) -> list[dict[str, object]]:
    """The runs (one metrics file: ``RUN_KEYS``) whose prediction collapsed on every case.

    ``collapse``: ``"nothing"`` when no case has a predicted voxel: ``predicted_voxels == 0``
    where the rows have that column, else the same read from the metrics (no false positive,
    specificity 1, and no true positive, sensitivity 0 where the case has tumour);
    ``"everything"`` when on every case at most ``NEARLY_ALL_SPECIFICITY`` of the background
    is left unpredicted (specificity <= 0.01: the model predicted (nearly) every voxel).
    NaN metrics are left out; a run without a value to judge is not named. Each entry: the
    run's keys (seed None without seeds), ``collapse`` and ``n_cases`` (its rows).
    """
    import pandas as pd

    if cases.empty:
        return []
    specificity, tumour = cases["specificity"], cases["tumour_voxels"]
    counted = (cases["predicted_voxels"] if "predicted_voxels" in cases.columns
               else pd.Series(math.nan, index=cases.index))
    read = (specificity == 1) & ((tumour == 0) | (cases["sensitivity"] == 0))
    flags = pd.DataFrame({
        "nothing": (counted == 0).where(counted.notna(), read),
        "judged": counted.notna() | specificity.notna(),
        "everything": specificity <= NEARLY_ALL_SPECIFICITY,
        "has_specificity": specificity.notna(),
    })
    runs = cases[list(RUN_KEYS)].assign(seed=cases["seed"].fillna(NO_SEED).astype(int))
    out = []
    for (dataset, model, loss, ratio, seed, fold), rows in flags.groupby(
            [runs[k] for k in RUN_KEYS], sort=True):
        if rows["judged"].any() and rows.loc[rows["judged"], "nothing"].all():
            kind = "nothing"
        elif rows["has_specificity"].any() and rows.loc[rows["has_specificity"],
                                                        "everything"].all():
            kind = "everything"
        else:
            continue
        out.append({"dataset": str(dataset), "model": str(model), "loss": str(loss),
                    "ratio": str(ratio), "seed": None if seed == NO_SEED else int(seed),
                    "fold": int(fold), "collapse": kind, "n_cases": len(rows)})
    return out


def check_out_dir(out_dir: str | Path) -> None:
    """Refuse an ``out_dir`` that is not a directory of stats outputs (or empty): the step
    replaces it as a whole and must never delete files the user made."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise CalfError(f"--out-dir {out_dir}: exists and is not a directory")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir()
                         if p.name not in OUTPUT_FILES or not p.is_file() or p.is_symlink())
        if foreign:
            raise CalfError(f"--out-dir {out_dir}: holds {', '.join(foreign[:3])}"
                            f"{', ...' if len(foreign) > 3 else ''}, which calf stats did not "
                            f"write; choose an empty or new directory")


def stats_record(stats: StudyStats) -> dict[str, object]:
    """The content of ``stats.json``: format, study, settings, handling, notes, the runs
    that collapsed (``collapsed_runs``) and the four tables as lists of records
    (non-finite numbers as null)."""
    record = {"format": FORMAT, "study": stats.study, "settings": stats.settings,
              "handling": stats.handling, "notes": stats.notes,
              "runs_collapsed": stats.runs_collapsed}
    for name in TABLES:
        record[name] = getattr(stats, name).to_dict(orient="records")
    return json_safe(record)


def write_stats(stats: StudyStats, out_dir: str | Path) -> list[Path]:
    """Write the four CSVs and ``stats.json`` into ``out_dir``; returns their paths.

    Everything is written into a temporary directory beside ``out_dir`` first, which then
    takes ``out_dir``'s place (a previous run's outputs are replaced together); a failure
    leaves ``out_dir`` as it was and no temporary directory behind. An ``out_dir`` holding
    anything but stats outputs is refused.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        for name, columns in TABLES.items():
            getattr(stats, name).to_csv(tmp / f"{name}.csv", index=False, columns=list(columns))
        (tmp / "stats.json").write_text(
            json.dumps(stats_record(stats), indent=1, allow_nan=False) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                        dir=out_dir.parent))
            os.rename(out_dir, old / out_dir.name)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if old is not None:
                os.rename(old / out_dir.name, out_dir)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return [out_dir / name for name in OUTPUT_FILES]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
