"""How stable each group's ranking is: ``calf.stats.ranking`` on the patients of a group.

Per group (``calf.stats.collect.GROUP_KEYS``, the modalities pooled) and metric, the losses'
per-patient means (``calf.stats.collect.patient_table``: one value per patient, the same
patients for every loss, a row NaN for any loss left out for all) are ranked on the full data
and in ``resamples`` bootstrap resamples of the patients (``bootstrap_ranks``), and every
ordered pair of losses gets a one-sided Wilcoxon test with Holm over the group's pairs
(``significance_map``). Three tables: ``rank_stability`` (one row per group and metric),
``rank_counts`` (the blob plot's data: one row per group, metric, loss and rank) and
``significance_map``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from calf.defaults import ALPHA, SEED
from calf.naming import LOSS_NAMES, ordered
from calf.stats.collect import GROUP_KEYS, HIGHER_IS_BETTER, patient_table, row_table
from calf.stats.paired import ZERO_METHODS
from calf.stats.ranking import MIN_PATIENTS, bootstrap_ranks, significance_map

if TYPE_CHECKING:
    import pandas as pd

RANK_RESAMPLES = 2000
STABILITY_COLUMNS = (*GROUP_KEYS, "metric", "n_patients", "n_patients_dropped_nan",
                     "resamples", "seed", "best", "best_mean", "best_share", "tau_median",
                     "tau_low", "tau_high")
COUNT_COLUMNS = (*GROUP_KEYS, "metric", "loss", "mean", "full_rank", "rank", "count", "share")
MAP_COLUMNS = (*GROUP_KEYS, "metric", "loss_a", "loss_b", "n_patients", "statistic",
               "p_value", "p_holm", "significant", "method")


def _group_tables(ident: dict, metric: str, values, losses: list[str], *, resamples: int,
                  seed: int, alpha: float, zero_method: str):
    """The three tables' rows of one group and metric."""
    higher = HIGHER_IS_BETTER[metric]
    boot = bootstrap_ranks(values, losses, higher, resamples, seed)
    best_mean = float(boot.ranking.loc[boot.best, "mean"])
    stability = [{**ident, "metric": metric, "n_patients": boot.n_patients,
                  "n_patients_dropped_nan": boot.n_patients_dropped_nan,
                  "resamples": boot.resamples, "seed": boot.seed, "best": boot.best,
                  "best_mean": best_mean, "best_share": boot.best_share,
                  "tau_median": boot.tau_median, "tau_low": boot.tau_low,
                  "tau_high": boot.tau_high}]
    counts = [{**ident, "metric": metric, "loss": loss,
               "mean": float(boot.ranking.loc[loss, "mean"]),
               "full_rank": int(boot.ranking.loc[loss, "rank"]), "rank": int(rank),
               "count": int(boot.rank_counts.loc[loss, rank]),
               "share": float(boot.rank_counts.loc[loss, rank]) / boot.resamples}
              for loss in losses for rank in boot.rank_counts.columns]
    pairs = significance_map(values, losses, higher, alpha=alpha, zero_method=zero_method)
    sig = [{**ident, "metric": metric, **row} for row in pairs.to_dict(orient="records")]
    return stability, counts, sig


def rank_tables(cases: "pd.DataFrame", metrics: Sequence[str], *, missing: str = "error",
                resamples: int = RANK_RESAMPLES, seed: int = SEED, alpha: float = ALPHA,
                zero_method: str = ZERO_METHODS[0]) -> tuple[dict[str, "pd.DataFrame"],
                                                             list[str]]:
    """``{"rank_stability", "rank_counts", "significance_map"}`` of every group of one
    study's ``cases`` (``calf.stats.collect.load_case_metrics`` rows) and the notes of the
    groups that could not be ranked (fewer than two losses or patients)."""
    import pandas as pd

    out: dict[str, list[dict]] = {"rank_stability": [], "rank_counts": [],
                                  "significance_map": []}
    notes = []
    for key, group in cases.groupby(list(GROUP_KEYS), sort=True):
        ident = dict(zip(GROUP_KEYS, key))
        losses = ordered(group["loss"].unique(), LOSS_NAMES)
        for metric in metrics:
            wide, _ = row_table(group, metric, losses, missing)
            table = patient_table(wide, losses)
            label = "/".join(str(v) for v in key)
            if len(losses) < 2 or table.n_patients < MIN_PATIENTS:
                notes.append(f"{label} {metric}: no ranking ({len(losses)} loss(es), "
                             f"{table.n_patients} patient(s) without NaN)")
                continue
            rows = _group_tables(ident, metric, table.values[losses].to_numpy(dtype=float),
                                 losses, resamples=resamples, seed=seed, alpha=alpha,
                                 zero_method=zero_method)
            for name, part in zip(out, rows):
                out[name] += part
    columns = {"rank_stability": STABILITY_COLUMNS, "rank_counts": COUNT_COLUMNS,
               "significance_map": MAP_COLUMNS}
    return {name: pd.DataFrame(out[name], columns=list(columns[name])) for name in out}, notes
