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

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

from calf._fs import atomic_dir, check_replaceable, json_text
from calf._json import json_safe
from calf.defaults import ALPHA, SEED
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
# the choices of the options, each default first
FAMILIES = ("group", "study")
MISSING = ("error", "drop")
DEFAULT_METRICS = ("dice", "hd95")
RESAMPLES = 2000  # bootstrap resamples of a median-difference CI

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
STATS_JSON = "stats.json"  # written into every --out-dir: the step's marker
OUTPUT_FILES = (*(f"{name}.csv" for name in TABLES), STATS_JSON)
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


def check_metrics(metrics: Sequence[str], option: str) -> tuple[str, ...]:
    """``metrics`` without repeats; a CalfError naming ``option`` and an unknown metric."""
    for metric in metrics:
        if metric not in METRIC_COLUMNS:
            raise CalfError(f"{option} {metric!r}: unknown metric, expected one of "
                            f"{', '.join(METRIC_COLUMNS)}")
    return tuple(dict.fromkeys(metrics))


def seeded_generator(seed: int, identity: Sequence[object]):
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


@dataclass(frozen=True)
class StatsOptions:
    """The choices of ``compute_stats`` that shape the numbers; checked when made (a
    CalfError names the option and the value).

    ``metrics``: of the paired tests; ``friedman_metrics``: of the Friedman test, ranks and
    Nemenyi test; ``family``: the Holm family (``FAMILIES``); ``missing``: a case some loss
    lacks stops the step or is left out (``MISSING``); ``zero_method``: scipy's treatment of
    zero differences; ``resamples`` and ``seed``: the bootstrap's; ``by_modality``: also one
    group per modality."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    friedman_metrics: tuple[str, ...] = DEFAULT_METRICS
    alpha: float = ALPHA
    family: str = FAMILIES[0]
    missing: str = MISSING[0]
    zero_method: str = ZERO_METHODS[0]
    resamples: int = RESAMPLES
    seed: int = SEED
    by_modality: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", check_metrics(self.metrics, "metric"))
        object.__setattr__(self, "friedman_metrics",
                           check_metrics(self.friedman_metrics, "friedman metric"))
        for name, allowed in (("family", FAMILIES), ("missing", MISSING),
                              ("zero_method", ZERO_METHODS)):
            if getattr(self, name) not in allowed:
                raise CalfError(f"{name} {getattr(self, name)!r}: expected one of "
                                f"{', '.join(allowed)}")
        if not 0 < self.alpha < 1:
            raise CalfError(f"alpha {self.alpha!r}: expected a number in (0, 1)")
        if self.resamples < 1:
            raise CalfError(f"resamples {self.resamples!r}: expected a positive number")

    @property
    def all_metrics(self) -> list[str]:
        """Every metric tested, each once, paired tests' first."""
        return list(dict.fromkeys([*self.metrics, *self.friedman_metrics]))

    def settings(self) -> dict[str, object]:
        """The options as ``stats.json`` records them."""
        return {"metrics": list(self.metrics), "friedman_metrics": list(self.friedman_metrics),
                "alpha": self.alpha, "family": self.family, "missing": self.missing,
                "zero_method": self.zero_method, "resamples": self.resamples,
                "seed": self.seed, "by_modality": self.by_modality}

    def handling(self) -> dict[str, str]:
        return handling_text(missing=self.missing, zero_method=self.zero_method,
                             family=self.family, alpha=self.alpha, resamples=self.resamples,
                             seed=self.seed, by_modality=self.by_modality)


# how every test is computed, recorded in stats.json's settings
METHOD_SETTINGS = {
    "unit": "subject_id (else member_dataset/patient_id)",
    "averaging": ["modality", "case_id", "seed"],
    "bootstrap_method": "percentile",
    "confidence_level": 0.95, "wilcoxon_alternative": "two-sided",
    "nemenyi": "scikit_posthocs.posthoc_nemenyi_friedman",
    "holm": "statsmodels.stats.multitest.multipletests(method='holm')",
}


def study_rows(cases: "pd.DataFrame", study: str) -> "pd.DataFrame":
    """The rows of ``study``; CalfError naming the studies the rows hold when it has none."""
    rows = cases[cases["study"] == study]
    if rows.empty:
        studies = ", ".join(sorted(set(cases["study"]))) or "none"
        raise CalfError(f"study {study!r}: no per-case rows (the files hold study {studies})")
    return rows


@dataclass
class _Comparison:
    """The losses of a study: those tested (its CALF losses) and the baselines."""

    losses: list[str]
    tested: list[str]
    baselines: list[str]

    @classmethod
    def of(cls, rows: "pd.DataFrame", calf_losses: Sequence[str]) -> _Comparison:
        losses = _order_losses(rows["loss"].unique())
        tested = [loss for loss in _order_losses(calf_losses) if loss in losses]
        return cls(losses, tested, [loss for loss in losses if loss not in tested])


@dataclass
class _Tables:
    """The rows of the four tables and the notes, gathered group by group."""

    study: str
    options: StatsOptions
    comparison: _Comparison
    paired: list[dict] = field(default_factory=list)
    friedman: list[dict] = field(default_factory=list)
    ranks: list[dict] = field(default_factory=list)
    nemenyi: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_group(self, key: tuple, modality: str, group: "pd.DataFrame") -> None:
        """Every test of one statistics group (``key``: the ``GROUP_KEYS`` values)."""
        ident = {**dict(zip(GROUP_KEYS, key)), "modality": modality}
        losses, options = self.comparison.losses, self.options
        for metric in options.all_metrics:
            # one row table per metric: every test of a group starts from the same rows
            wide, dropped_missing = row_table(group, metric, losses, options.missing)
            pairs = ([(c, b) for c in self.comparison.tested for b in self.comparison.baselines]
                     if metric in options.metrics else [])
            tables = patient_tables(wide, [*pairs, losses])
            identity = (*key, *([] if modality == POOLED else [modality]), metric)
            for pair, table in zip(pairs, tables):
                self._add_paired(ident, identity, metric, pair, table, dropped_missing)
            if metric in options.friedman_metrics:
                self._add_friedman(ident, metric, tables[-1], dropped_missing)

    def _add_paired(self, ident: dict, identity: tuple, metric: str, pair: tuple[str, str],
                    table, dropped_missing) -> None:
        """The Wilcoxon test of one CALF loss against one baseline (Holm comes later)."""
        from calf.stats.paired import paired_test

        calf, baseline = pair
        options, label = self.options, stats_label(ident)
        result = paired_test(table.values[calf].to_numpy(), table.values[baseline].to_numpy(),
                             zero_method=options.zero_method, resamples=options.resamples,
                             rng=seeded_generator(options.seed, (*identity, calf, baseline)))
        if math.isnan(result.p_value):
            self.notes.append(f"{label} {metric} {calf} vs {baseline}: {result.method}")
        numbers = result.as_dict()
        numbers.pop("n_pairs")  # = n_patients
        self.paired.append({
            **ident, "metric": metric, "calf_loss": calf, "baseline": baseline,
            **_unit_counts(table, dropped_missing), **numbers,
            "favours": _favours(result.rank_biserial, HIGHER_IS_BETTER[metric], calf, baseline),
            "family": _family_name(options.family, label, self.study, ident["modality"]),
        })

    def _add_friedman(self, ident: dict, metric: str, table, dropped_missing) -> None:
        """The Friedman test, mean ranks and Nemenyi test over all of the study's losses."""
        values = table.values.to_numpy(dtype=float)
        losses, alpha = self.comparison.losses, self.options.alpha
        higher = HIGHER_IS_BETTER[metric]
        self.friedman.append({**ident, "metric": metric, **_unit_counts(table, dropped_missing),
                              **_friedman_row(values, alpha, stats_label(ident), metric,
                                              self.notes)})
        self.ranks += [{**ident, "metric": metric, **row}
                       for row in _rank_rows(values, losses, higher)]
        self.nemenyi += [{**ident, "metric": metric, **row}
                         for row in _nemenyi_rows(values, losses, higher, alpha)]


def with_holm(paired: "pd.DataFrame", alpha: float) -> "pd.DataFrame":
    """``paired`` with ``p_holm``, ``family_size`` (its tests with a p-value) and
    ``significant`` (``p_holm < alpha``), Holm's correction run per ``family``."""
    import numpy as np

    from calf.stats.paired import holm

    if paired.empty:
        return paired
    paired = paired.assign(p_holm=np.nan, family_size=0)
    for _, index in paired.groupby(paired["family"], sort=False).groups.items():
        p = paired.loc[index, "p_value"].to_numpy(dtype=float)
        paired.loc[index, "p_holm"] = holm(p)
        paired.loc[index, "family_size"] = int((~np.isnan(p)).sum())
    paired["significant"] = (paired["p_holm"] < alpha).astype(bool)
    paired["family_size"] = paired["family_size"].astype(int)
    return paired


def compute_stats(
    cases: "pd.DataFrame",
    *,
    study: str,
    calf_losses: Sequence[str] = CALF_LOSSES,
    scoring: str | None = None,
    **options,
) -> StudyStats:
    """The four tables of ``study`` from its per-case rows (see the module docstring).

    ``calf_losses``: those the study has are tested against every other loss; with none
    present there are no paired tests (a note says so) and the Friedman test still runs.
    ``scoring``: where and how the metrics were computed (``scoring_summary`` of the
    metrics files' companions), recorded in the settings. ``options``: the fields of
    ``StatsOptions`` (``metrics``, ``friedman_metrics``, ``alpha``, ``family``, ``missing``,
    ``zero_method``, ``resamples``, ``seed``, ``by_modality``).
    Raises ``CalfError`` for an unknown metric or option, a study without rows, a case
    assigned to two patients, and (``missing="error"``) a case some loss lacks.
    """
    import pandas as pd

    unknown = sorted(set(options) - set(StatsOptions.__dataclass_fields__))
    if unknown:
        raise TypeError(f"compute_stats: unknown option(s) {', '.join(unknown)}")
    opts = StatsOptions(**options)
    rows = study_rows(cases, study)
    comparison = _Comparison.of(rows, calf_losses)
    tables = _Tables(study, opts, comparison)
    if not comparison.tested:
        # e.g. a study of new baselines only: nothing to pair, the Friedman test still runs
        asked = ", ".join(calf_losses) or "none asked for"
        tables.notes.append(f"study {study!r} has no CALF loss ({asked}); "
                            f"its losses: {', '.join(comparison.losses)}: no paired tests")
    for key, whole in rows.groupby(list(GROUP_KEYS), sort=True):
        # every loss of the study must have run in every group; with missing="error" a
        # case some loss lacks stops here, before any test
        check_complete(whole, comparison.losses, opts.missing)
        for modality, group in modality_groups(whole, opts.by_modality):
            tables.add_group(key, modality, group)
    settings = {"calf_losses": comparison.tested, "baselines": comparison.baselines,
                "losses": comparison.losses, **opts.settings(), "scoring": scoring,
                **METHOD_SETTINGS}
    return StudyStats(
        study=study,
        settings=settings,
        handling=opts.handling(),
        paired=with_holm(pd.DataFrame(tables.paired, columns=list(PAIRED_COLUMNS)), opts.alpha),
        friedman=pd.DataFrame(tables.friedman, columns=list(FRIEDMAN_COLUMNS)),
        ranks=pd.DataFrame(tables.ranks, columns=list(RANKS_COLUMNS)),
        nemenyi=pd.DataFrame(tables.nemenyi, columns=list(NEMENYI_COLUMNS)),
        notes=tables.notes,
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


def check_out_dir(out_dir: str | Path, force: bool = False) -> Path:
    """``out_dir`` as a Path, if ``write_stats`` may replace it: new, empty, a previous run's
    (it holds ``stats.json``), or anything with ``force``; else a CalfError naming it."""
    return check_replaceable(out_dir, owned_by=STATS_JSON, force=force)


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


def write_stats(stats: StudyStats, out_dir: str | Path, force: bool = False) -> list[Path]:
    """Write the four CSVs and ``stats.json`` into ``out_dir``; returns their paths.

    Everything is written into a staging folder beside ``out_dir``, which then takes
    ``out_dir``'s place (a previous run's outputs are replaced together); a failure leaves
    ``out_dir`` as it was. A folder without ``stats.json`` is replaced only with ``force``
    (``check_out_dir``).
    """
    with atomic_dir(out_dir, owned_by=STATS_JSON, force=force) as staging:
        for name, columns in TABLES.items():
            getattr(stats, name).to_csv(staging / f"{name}.csv", index=False,
                                        columns=list(columns))
        (staging / STATS_JSON).write_text(json_text(stats_record(stats)))
    return [Path(out_dir) / name for name in OUTPUT_FILES]
