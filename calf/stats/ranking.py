"""How stable a ranking of losses is: a bootstrap over patients and a significance map.

Patients are the unit (rows of a ``calf.stats.collect.PatientTable``'s values, one column
per loss). The ranking orders the losses by their mean per-patient metric, rank 1 = best;
tied means share the lowest rank they span (``scipy.stats.rankdata(method="min")``).

``bootstrap_ranks`` resamples patients with replacement (a ``numpy`` Generator seeded with
``calf.defaults.SEED`` unless told otherwise), ranks the losses in each resample and
reports per loss the distribution of its rank (challengeR's "blob plot"), Kendall's tau
(``scipy.stats.kendalltau``, tau-b) between each bootstrap ranking and the full-data one,
and the share of resamples in which the full-data best loss stays rank 1.

``significance_map`` is challengeR's map: for every ordered pair (a, b) a one-sided
Wilcoxon signed-rank test that a is better than b on the patients' paired values, Holm
over all the ordered pairs.

NaN: a patient with a NaN for any of the losses is dropped from both (so every loss is
ranked on the same patients), and the number dropped is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from calf.defaults import ALPHA, SEED
from calf.errors import CalfError
from calf.stats.paired import ZERO_METHODS, holm, wilcoxon_method

if TYPE_CHECKING:
    import pandas as pd

MIN_LOSSES = 2
MIN_PATIENTS = 2
RANK_METHOD = "min"


@dataclass(frozen=True)
class RankStability:
    """The bootstrap of one group's ranking.

    ``ranking``: one row per loss (index ``loss``) in the given order, columns ``mean``
    (mean per-patient metric) and ``rank`` (full-data rank, 1 = best, ties "min").
    ``rank_counts``: index ``loss``, columns ``1 .. k``: the number of resamples in which
    the loss got that rank (each row sums to ``resamples``). ``tau``: one row per resample,
    column ``tau``: Kendall's tau-b between its ranking and the full one (NaN where a
    ranking is constant). ``best``: the full-data best loss (the first in the given order
    among those of rank 1); ``best_share``: the share of resamples in which it has rank 1.
    """

    losses: tuple[str, ...]
    n_patients: int
    n_patients_dropped_nan: int
    resamples: int
    seed: int
    ranking: pd.DataFrame
    rank_counts: pd.DataFrame
    tau: pd.DataFrame
    tau_median: float
    tau_low: float
    tau_high: float
    best: str
    best_share: float


def _checked(values: np.ndarray, losses: Sequence[str]) -> tuple[np.ndarray, int]:
    """The rows of ``values`` without NaN and how many were dropped; CalfError on bad
    shapes or too few losses/patients."""
    values = np.asarray(values, dtype=float)
    losses = list(losses)
    if values.ndim != 2:
        raise CalfError(f"ranking: values must be a patients x losses table, got shape "
                        f"{values.shape}")
    if values.shape[1] != len(losses):
        raise CalfError(f"ranking: values have {values.shape[1]} columns but {len(losses)} "
                        f"losses were named ({', '.join(losses)})")
    if len(set(losses)) != len(losses):
        raise CalfError(f"ranking: losses repeat: {', '.join(losses)}")
    if len(losses) < MIN_LOSSES:
        raise CalfError(f"ranking: {len(losses)} loss(es) ({', '.join(losses)}); "
                        f"at least {MIN_LOSSES} are needed")
    keep = ~np.isnan(values).any(axis=1)
    kept = values[keep]
    if len(kept) < MIN_PATIENTS:
        raise CalfError(f"ranking: {len(kept)} patient(s) without NaN "
                        f"({int((~keep).sum())} dropped); at least {MIN_PATIENTS} are needed")
    return kept, int((~keep).sum())


def rank_means(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks of the last axis's means, 1 = best, ties sharing the lowest rank ("min")."""
    from scipy.stats import rankdata

    means = np.asarray(means, dtype=float)
    return rankdata(-means if higher_is_better else means, axis=-1, method=RANK_METHOD)


def bootstrap_ranks(values: np.ndarray, losses: Sequence[str], higher_is_better: bool,
                    resamples: int, seed: int = SEED) -> RankStability:
    """The full-data ranking of ``losses`` by mean per-patient metric and its bootstrap
    over patients (rows of ``values``, resampled with replacement)."""
    import pandas as pd
    from scipy.stats import kendalltau

    kept, dropped = _checked(values, losses)
    losses = tuple(losses)
    if int(resamples) != resamples or resamples < 1:
        raise CalfError(f"ranking: resamples {resamples!r}: expected an integer >= 1")
    resamples = int(resamples)
    n, k = kept.shape
    means = kept.mean(axis=0)
    full = rank_means(means, higher_is_better)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, size=(resamples, n))
    boot = rank_means(kept[rows].mean(axis=1), higher_is_better)
    counts = np.stack([(boot == r).sum(axis=0) for r in range(1, k + 1)], axis=1)
    taus = np.array([kendalltau(b, full).statistic for b in boot], dtype=float)
    best_index = int(np.flatnonzero(full == 1)[0])
    finite = taus[~np.isnan(taus)]
    low, median, high = (np.quantile(finite, [0.025, 0.5, 0.975]) if finite.size
                         else (np.nan,) * 3)
    index = pd.Index(losses, name="loss")
    return RankStability(
        losses=losses, n_patients=n, n_patients_dropped_nan=dropped, resamples=resamples,
        seed=seed,
        ranking=pd.DataFrame({"mean": means, "rank": full}, index=index),
        rank_counts=pd.DataFrame(counts, index=index, columns=range(1, k + 1)),
        tau=pd.DataFrame({"tau": taus}, index=pd.RangeIndex(resamples, name="resample")),
        tau_median=float(median), tau_low=float(low), tau_high=float(high),
        best=losses[best_index], best_share=float((boot[:, best_index] == 1).mean()))


def significance_map(values: np.ndarray, losses: Sequence[str], higher_is_better: bool,
                     alpha: float = ALPHA, zero_method: str = ZERO_METHODS[0]) -> "pd.DataFrame":
    """challengeR's significance map: one row per ordered pair (``loss_a``, ``loss_b``),
    a != b, in the order of ``losses``.

    Columns: ``n_patients``, ``statistic`` and ``p_value`` of ``scipy.stats.wilcoxon`` of
    a against b, one-sided for "a better than b" (``alternative="greater"`` on a - b when
    higher is better, on b - a otherwise), ``method`` (as ``calf.stats.paired`` chooses
    it; ``"all zero"`` when a and b never differ: p = 1), ``p_holm`` (Holm over all the
    ordered pairs) and ``significant`` (``p_holm < alpha``).
    """
    import pandas as pd
    from scipy.stats import PermutationMethod, wilcoxon

    kept, _ = _checked(values, losses)
    if zero_method not in ZERO_METHODS:
        raise CalfError(f"ranking: zero_method {zero_method!r}: expected one of "
                        f"{', '.join(ZERO_METHODS)}")
    if not 0 < alpha < 1:
        raise CalfError(f"ranking: alpha {alpha!r}: expected a value in (0, 1)")
    losses = list(losses)
    records = []
    for a, name_a in enumerate(losses):
        for b, name_b in enumerate(losses):
            if a == b:
                continue
            better, worse = (kept[:, a], kept[:, b]) if higher_is_better else (kept[:, b],
                                                                                kept[:, a])
            diff = better - worse
            row = {"loss_a": name_a, "loss_b": name_b, "n_patients": len(diff)}
            if not diff.any():
                row.update(statistic=np.nan, p_value=1.0, method="all zero")
            else:
                method = wilcoxon_method(diff)
                scipy_method = {"exact": "exact", "approx": "asymptotic",
                                "permutation": PermutationMethod()}[method]
                result = wilcoxon(better, worse, zero_method=zero_method,
                                  alternative="greater", method=scipy_method)
                row.update(statistic=float(result.statistic), p_value=float(result.pvalue),
                           method=method)
            records.append(row)
    table = pd.DataFrame.from_records(records)
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    return table


__all__ = ["RankStability", "bootstrap_ranks", "rank_means", "significance_map"]
