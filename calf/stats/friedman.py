"""All losses at once: Friedman test with patients as blocks, mean ranks, Nemenyi, CD.

Demšar (2006, JMLR 7:1-30): rank the k losses within each block (rank 1 = best; the
suite's blocks are patients, ``calf.stats.collect.patient_table``), compare
the mean ranks with the Friedman test (scipy, with its tie correction) and its
Iman-Davenport F form, then every pair with the Nemenyi test (scikit-posthocs); two losses
differ when their mean ranks differ by at least the critical difference
CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile over sqrt(2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_LOSSES = 3  # scipy.stats.friedmanchisquare needs k >= 3
MIN_BLOCKS = 2  # Iman-Davenport's denominator degrees of freedom (k - 1)(N - 1) > 0


@dataclass
class FriedmanResult:
    """The Friedman test of one (N blocks x k losses) table; NaN where not defined."""

    n_blocks: int
    k: int
    chi2: float
    p_value: float
    iman_davenport_f: float
    iman_davenport_p: float
    note: str


def mean_ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Mean over blocks (rows) of each column's rank within its row; rank 1 = best.

    Ties within a row share the average of the ranks they span.
    """
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=float)
    ranks = rankdata(-values if higher_is_better else values, axis=1, method="average")
    return ranks.mean(axis=0)


def friedman_chi2_from_ranks(ranks: np.ndarray, n: int) -> float:
    """Friedman's statistic from mean ranks, without tie correction (Demšar's eq.):
    12 N / (k (k + 1)) * (sum R_j^2 - k (k + 1)^2 / 4)."""
    ranks = np.asarray(ranks, dtype=float)
    k = ranks.size
    return 12 * n / (k * (k + 1)) * (float((ranks**2).sum()) - k * (k + 1) ** 2 / 4)


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman-Davenport F = (N - 1) chi2 / (N (k - 1) - chi2) and its p-value, F with
    (k - 1, (k - 1)(N - 1)) degrees of freedom. F is infinite (p = 0) when every block
    ranks the losses alike (chi2 = N (k - 1))."""
    from scipy.stats import f as f_dist

    if math.isnan(chi2) or n < MIN_BLOCKS or k < 2:
        return float("nan"), float("nan")
    denominator = n * (k - 1) - chi2
    if denominator <= 0:
        return float("inf"), 0.0
    f_value = (n - 1) * chi2 / denominator
    return float(f_value), float(f_dist.sf(f_value, k - 1, (k - 1) * (n - 1)))


def friedman_test(values: np.ndarray) -> FriedmanResult:
    """``scipy.stats.friedmanchisquare`` over the columns of ``values`` (rows = blocks:
    patients).

    k < 3 or N < 2: NaN throughout, ``note`` says why. Every block tied across all losses:
    chi2 NaN (scipy's tie correction divides by zero), p = 1 (no block orders the losses).
    """
    from scipy.stats import friedmanchisquare

    values = np.asarray(values, dtype=float)
    n, k = values.shape
    nan = float("nan")
    if k < MIN_LOSSES:
        return FriedmanResult(n, k, nan, nan, nan, nan,
                              f"Friedman test not computed: {k} loss(es), it needs {MIN_LOSSES}")
    if n < MIN_BLOCKS:
        return FriedmanResult(n, k, nan, nan, nan, nan,
                              f"Friedman test not computed: {n} patient(s), it needs {MIN_BLOCKS}")
    if (values == values[:, :1]).all():
        return FriedmanResult(n, k, nan, 1.0, nan, 1.0,
                              "every patient ties all losses: Friedman p set to 1")
    result = friedmanchisquare(*values.T)
    chi2 = float(result.statistic)
    f_value, f_p = iman_davenport(chi2, n, k)
    return FriedmanResult(n, k, chi2, float(result.pvalue), f_value, f_p, "")


def q_alpha(k: int, alpha: float) -> float:
    """Nemenyi's critical value: the studentized range quantile (1 - alpha, k, df = inf)
    over sqrt(2) (Demšar's Table 5a: 1.960, 2.343, 2.569, 2.728, 2.850 for k = 2..6 at
    alpha 0.05)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float) -> tuple[float, float]:
    """(q_alpha, CD = q_alpha * sqrt(k (k + 1) / (6 N))); NaN for k < 2 or N < 1."""
    if k < 2 or n < 1:
        return float("nan"), float("nan")
    q = q_alpha(k, alpha)
    return q, q * math.sqrt(k * (k + 1) / (6 * n))


def nemenyi(values: np.ndarray) -> np.ndarray:
    """Nemenyi p-values of every pair of columns (k x k, diagonal 1), from
    ``scikit_posthocs.posthoc_nemenyi_friedman``. They depend on |mean rank difference|
    only, so the metric's direction does not matter."""
    import scikit_posthocs

    return scikit_posthocs.posthoc_nemenyi_friedman(np.asarray(values, dtype=float)).to_numpy()
