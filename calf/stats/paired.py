"""One CALF loss against one baseline on matched cases: Wilcoxon, effect size, CI, Holm.

The paired Wilcoxon signed-rank test is scipy's (``scipy.stats.wilcoxon``); the method it
uses is chosen here exactly as scipy's ``method="auto"`` would choose it, and passed
explicitly, so that the output can say which one ran. The effect size is the matched-pairs
rank-biserial correlation computed from the same ranks the test uses; the median paired
difference gets a percentile bootstrap CI (``scipy.stats.bootstrap``), whose resamples come
from a generator the caller seeds. Holm's correction is statsmodels' ``method="holm"`` (its
default is Holm-Sidak, which is not what is reported here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ZERO_METHODS = ("wilcox", "pratt", "zsplit")
# scipy.stats.wilcoxon's method="auto": exact below this many differences when there are
# neither ties nor zeros; the permutation distribution (enumerated in full) up to
# EXACT_PERMUTATION_MAX differences otherwise
AUTO_EXACT_MAX = 50
EXACT_PERMUTATION_MAX = 13
MIN_PAIRS = 2


@dataclass
class PairedResult:
    """The numbers of one paired comparison; ``diff = calf - baseline``."""

    n_pairs: int
    n_zero_diff: int
    mean_calf: float
    mean_baseline: float
    median_diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    rank_biserial: float
    method: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wilcoxon_method(diff: np.ndarray) -> str:
    """The method ``scipy.stats.wilcoxon(method="auto")`` uses on these differences.

    ``"exact"`` (at most 50 differences, no tied absolute differences and no zeros),
    ``"permutation"`` (at most 13 differences with ties or zeros: all 2**n sign flips are
    enumerated, so the p-value is exact and deterministic), else ``"approx"`` (the normal
    approximation with scipy's tie correction of the variance).
    """
    diff = np.asarray(diff, dtype=float)
    nonzero = np.abs(diff[diff != 0])
    has_zeros = nonzero.size < diff.size
    has_ties = np.unique(nonzero).size < nonzero.size
    if diff.size > AUTO_EXACT_MAX:
        return "approx"
    if not (has_ties or has_zeros):
        return "exact"
    if diff.size <= EXACT_PERMUTATION_MAX:
        return "permutation"
    return "approx"


def signed_rank_sums(diff: np.ndarray, zero_method: str) -> tuple[float, float]:
    """R+ and R-: sums of the ranks of |d| over positive and negative differences.

    The ranks are those ``scipy.stats.wilcoxon`` uses for ``zero_method``: ``wilcox`` ranks
    the non-zero differences only; ``pratt`` ranks all and then leaves the zeros' ranks out
    of both sums; ``zsplit`` ranks all and adds half of the zeros' ranks to each sum.
    Ties get average ranks.
    """
    from scipy.stats import rankdata

    if zero_method not in ZERO_METHODS:
        raise ValueError(f"zero_method {zero_method!r}: expected one of {', '.join(ZERO_METHODS)}")
    diff = np.asarray(diff, dtype=float)
    if zero_method == "wilcox":
        diff = diff[diff != 0]
    ranks = rankdata(np.abs(diff))
    r_plus = float(ranks[diff > 0].sum())
    r_minus = float(ranks[diff < 0].sum())
    if zero_method == "zsplit":
        half_zero = float(ranks[diff == 0].sum()) / 2
        r_plus, r_minus = r_plus + half_zero, r_minus + half_zero
    return r_plus, r_minus


def rank_biserial(diff: np.ndarray, zero_method: str) -> float:
    """Matched-pairs rank-biserial correlation r = (R+ - R-) / (R+ + R-), in [-1, 1].

    Positive when the first sample (CALF) tends to be larger. 0 when every difference is 0.
    """
    r_plus, r_minus = signed_rank_sums(diff, zero_method)
    total = r_plus + r_minus
    return 0.0 if total == 0 else (r_plus - r_minus) / total


def median_ci(diff: np.ndarray, resamples: int, rng: np.random.Generator,
              confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the median of ``diff`` (``scipy.stats.bootstrap``).

    The percentile method, not BCa: BCa's jackknife acceleration is undefined or unstable
    when many differences tie (common with Dice at 1 on tumour-free cases).
    """
    from scipy.stats import bootstrap

    result = bootstrap((np.asarray(diff, dtype=float),), np.median, n_resamples=resamples,
                       vectorized=True, method="percentile", confidence_level=confidence,
                       rng=rng)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_test(calf: np.ndarray, baseline: np.ndarray, *, zero_method: str, resamples: int,
                rng: np.random.Generator) -> PairedResult:
    """Wilcoxon signed-rank test of ``calf - baseline`` with effect size and median CI.

    Fewer than 2 pairs: no test (p, statistic, effect size and CI NaN; ``method`` says so).
    Every difference zero: p = 1, statistic NaN, rank-biserial 0, CI [0, 0], method
    ``"all zero"`` (scipy's test is undefined there).
    """
    from scipy.stats import PermutationMethod, wilcoxon

    calf = np.asarray(calf, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    diff = calf - baseline
    n = int(diff.size)
    nan = float("nan")
    common = {
        "n_pairs": n,
        "n_zero_diff": int((diff == 0).sum()),
        "mean_calf": float(calf.mean()) if n else nan,
        "mean_baseline": float(baseline.mean()) if n else nan,
        "median_diff": float(np.median(diff)) if n else nan,
    }
    if n < MIN_PAIRS:
        return PairedResult(**common, ci_low=nan, ci_high=nan, statistic=nan, p_value=nan,
                            rank_biserial=nan, method=f"too few pairs ({n} < {MIN_PAIRS})")
    if not diff.any():
        return PairedResult(**common, ci_low=0.0, ci_high=0.0, statistic=nan, p_value=1.0,
                            rank_biserial=0.0, method="all zero")
    method = wilcoxon_method(diff)
    scipy_method = {"exact": "exact", "approx": "asymptotic",
                    "permutation": PermutationMethod()}[method]
    result = wilcoxon(calf, baseline, zero_method=zero_method, method=scipy_method)
    low, high = median_ci(diff, resamples, rng)
    return PairedResult(**common, ci_low=low, ci_high=high, statistic=float(result.statistic),
                        p_value=float(result.pvalue),
                        rank_biserial=rank_biserial(diff, zero_method), method=method)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels ``multipletests(method="holm")``).

    NaN entries (tests that could not run) are left out of the family and stay NaN.
    statsmodels runs a full ``gc.collect()`` after every Holm correction (70 ms in a process
    holding pandas and matplotlib, per family); the objects that exist before the call are
    frozen for its duration (``gc.freeze``, undone after), so that collection only looks at
    what the call made.
    """
    import gc

    from statsmodels.stats.multitest import multipletests

    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    finite = ~np.isnan(p_values)
    if finite.any():
        gc.freeze()
        try:
            adjusted[finite] = multipletests(p_values[finite], method="holm")[1]
        finally:
            gc.unfreeze()
    return adjusted
