"""How CALF's advantage changes with tumour size, and with the training set's imbalance.

``volume_interaction`` estimates, per group (study, dataset, model, ratio), metric, CALF
loss and baseline, the change of CALF's advantage per doubling of tumour volume, from the
tumour-bearing patients of ``patient_advantage.csv`` (``calf.analysis.strata``), two ways:

- ``"mixedlm"``: statsmodels' linear mixed model of the metric on loss x log2 volume,
  ``value ~ is_calf * log2_size`` with a random intercept per patient (two rows per
  patient, one per loss), fitted by REML. The value's sign is flipped for lower-is-better
  metrics (HD95), so the interaction coefficient is the change of the advantage (positive
  favours CALF) per doubling; its Wald CI and p come from the fit.
- ``"theil-sen"``: a rank-based alternative, scipy's Theil-Sen slope of the per-patient
  advantage on log2 volume with its CI, and Kendall's tau test of the same pair.

With two rows per patient the interaction is estimated from the within-patient contrast,
the advantage, so the mixed model's normality assumption is checked on the residuals of
the advantage's least-squares line on log2 volume (Shapiro-Wilk). The mixed model is the
``primary`` row when it converged and those residuals are consistent with normality, the
Theil-Sen row otherwise; ``reason`` says which and why. Every comparison has exactly one
primary row (also when there are too few patients and both rows are NaN).

``imbalance_advantage`` sets each group's training-set imbalance (S, K, branch, share of
tumour slices; ``regimes.csv``) next to CALF's median advantage over the group's patients,
and tests the trend across groups (Spearman): against the filter ratio when the study
varies it, else against the training sets' skewness S.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from calf.defaults import ALPHA
from calf.layout import ratio_text, ratio_value
from calf.stats.collect import GROUP_KEYS, HIGHER_IS_BETTER

if TYPE_CHECKING:
    import pandas as pd

COMPARISON_KEYS = (*GROUP_KEYS, "metric", "calf_loss", "baseline")
INTERACTION_COLUMNS = (*COMPARISON_KEYS, "n_patients", "size_unit", "method",
                       "slope_per_doubling", "ci_low", "ci_high", "p_value", "primary",
                       "reason", "converged", "normality_p")
IMBALANCE_COLUMNS = (*COMPARISON_KEYS, "skewness", "kurtosis", "branch", "tumour_slice_ratio",
                     "n_patients", "median_advantage")
TREND_KEYS = ("study", "model", "metric", "calf_loss", "baseline")
TREND_COLUMNS = (*TREND_KEYS, "x", "n_groups", "spearman_rho", "p_value")
REGIME_KEYS = ("study", "dataset", "ratio")

MIXEDLM, THEIL_SEN = "mixedlm", "theil-sen"
METHODS = (MIXEDLM, THEIL_SEN)
FORMULA = "value ~ is_calf * log2_size"
INTERACTION_TERM = "is_calf:log2_size"
REML = True
# fewer tumour-bearing patients than this: no slope (NaN rows)
MIN_PATIENTS = 5
# fewer groups than this: no Spearman trend
MIN_TREND_GROUPS = 3
TREND_RATIO, TREND_SKEWNESS = "ratio", "skewness"
BRANCH_SEPARATOR = "+"


def long_table(rows: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    """The mixed model's data: one row per patient and loss (CALF's rows, then the
    baseline's, each in ``rows``' order) with ``subject``, ``is_calf`` (1/0), ``log2_size``
    (log2 of the size, centred on the patients' mean) and ``value`` (the metric, negated
    when lower is better, so that larger always favours CALF)."""
    import numpy as np
    import pandas as pd

    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    log2_size = np.log2(rows["size"].to_numpy(dtype=float))
    log2_size = log2_size - log2_size.mean()
    parts = [pd.DataFrame({"subject": rows["subject_id"].astype(str).to_numpy(),
                           "is_calf": is_calf, "log2_size": log2_size,
                           "value": sign * rows[column].to_numpy(dtype=float)})
             for is_calf, column in ((1, "calf_value"), (0, "baseline_value"))]
    return pd.concat(parts, ignore_index=True)


def fit_mixedlm(long: "pd.DataFrame", *, alpha: float = ALPHA) -> dict[str, object]:
    """The interaction of ``FORMULA`` (random intercept per ``subject``, REML): its
    estimate, Wald CI at level 1 - alpha, p and whether the fit converged with a finite
    standard error; NaNs and a ``failure`` text when the fit is singular. statsmodels'
    ConvergenceWarnings are silenced here, the outcome being recorded instead, and so is
    its SingularMatrixWarning for a random-intercept variance estimated at 0 (no
    between-patient spread beyond the residual's: a boundary estimate, not a failure; the
    fixed effects stay defined)."""
    import numpy as np
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, SingularMatrixWarning

    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SingularMatrixWarning)
        try:
            fit = smf.mixedlm(FORMULA, long, groups=long["subject"]).fit(reml=REML)
        except (np.linalg.LinAlgError, ValueError) as err:
            return {"slope": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
                    "converged": False, "failure": f"singular fit ({err})"}
    low, high = fit.conf_int(alpha=alpha).loc[INTERACTION_TERM]
    finite = bool(np.isfinite([low, high]).all())
    return {"slope": float(fit.fe_params[INTERACTION_TERM]), "ci_low": float(low),
            "ci_high": float(high), "p_value": float(fit.pvalues[INTERACTION_TERM]),
            "converged": bool(fit.converged) and finite,
            "failure": "" if finite else "no finite standard error (singular Hessian)"}


def fit_theil_sen(advantage, log2_size, *, alpha: float = ALPHA) -> dict[str, float]:
    """scipy's Theil-Sen slope of the advantage on log2 size with its 1 - alpha CI, and
    the p of Kendall's tau between the two (NaN when either is constant)."""
    import numpy as np
    import scipy.stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant input: NaN, said so
        slope, _, low, high = scipy.stats.theilslopes(advantage, log2_size, alpha=1 - alpha)
        tau = scipy.stats.kendalltau(advantage, log2_size)
    return {"slope": float(slope), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(tau.pvalue) if np.isfinite(tau.pvalue) else float("nan")}


def normality_p(advantage, log2_size) -> float:
    """Shapiro-Wilk p of the residuals of the advantage's least-squares line on log2 size
    (statsmodels OLS): the contrast the mixed model's interaction is estimated from."""
    import scipy.stats
    import statsmodels.api as sm

    residuals = sm.OLS(advantage, sm.add_constant(log2_size)).fit().resid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zero range: scipy's p, kept
        return float(scipy.stats.shapiro(residuals).pvalue)


def _choose(mixed: dict[str, object], normal_p: float, alpha: float) -> tuple[str, str]:
    """The primary method and why, in one short sentence."""
    if not mixed["converged"]:
        why = mixed["failure"] or "it did not converge"
        return THEIL_SEN, f"Theil-Sen: the mixed model (REML) failed: {why}."
    if not normal_p >= alpha:  # also NaN
        return THEIL_SEN, (f"Theil-Sen: the advantage's residuals are not normal "
                           f"(Shapiro-Wilk p = {normal_p:.3g} < {alpha:g}).")
    return MIXEDLM, (f"mixed model (REML): converged, residuals consistent with normality "
                     f"(Shapiro-Wilk p = {normal_p:.3g} >= {alpha:g}).")


def _rows(key: dict, n: int, unit: str, fits: dict, primary: str, reason: str,
          converged, normal_p: float) -> list[dict[str, object]]:
    """The comparison's two rows, one per method, in ``INTERACTION_COLUMNS``' order."""
    nan = float("nan")
    out = []
    for method in METHODS:
        fit = fits.get(method, {})
        out.append({**key, "n_patients": n, "size_unit": unit, "method": method,
                    "slope_per_doubling": fit.get("slope", nan),
                    "ci_low": fit.get("ci_low", nan), "ci_high": fit.get("ci_high", nan),
                    "p_value": fit.get("p_value", nan), "primary": method == primary,
                    "reason": reason, "converged": converged if method == MIXEDLM else None,
                    "normality_p": normal_p})
    return out


def _comparison(key: dict, rows: "pd.DataFrame", alpha: float) -> list[dict[str, object]]:
    """Both methods' rows for one comparison's tumour-bearing patients."""
    import numpy as np

    n = len(rows)
    unit = "/".join(sorted(rows["size_unit"].astype(str).unique()))
    log2_size = np.log2(rows["size"].to_numpy(dtype=float))
    if n < MIN_PATIENTS or np.unique(log2_size).size < 2:
        why = (f"too few tumour-bearing patients ({n} < {MIN_PATIENTS})" if n < MIN_PATIENTS
               else "the tumour sizes do not vary")
        return _rows(key, n, unit, {}, THEIL_SEN, f"no slope: {why}.", None, float("nan"))
    advantage = rows["advantage"].to_numpy(dtype=float)
    mixed = fit_mixedlm(long_table(rows, key["metric"]), alpha=alpha)
    fits = {MIXEDLM: mixed, THEIL_SEN: fit_theil_sen(advantage, log2_size, alpha=alpha)}
    normal_p = normality_p(advantage, log2_size)
    primary, reason = _choose(mixed, normal_p, alpha)
    return _rows(key, n, unit, fits, primary, reason, mixed["converged"], normal_p)


def _comparison_task(task: tuple) -> list[dict[str, object]]:
    """``_comparison`` of one (key, rows, alpha): the unit of work of a worker process."""
    return _comparison(*task)


def volume_interaction(advantages: "pd.DataFrame", *, alpha: float = ALPHA,
                       jobs: int = 1) -> "pd.DataFrame":
    """``interaction.csv``: per group, metric, CALF loss and baseline, the change of CALF's
    advantage per doubling of tumour size by both methods (module docstring), from the
    tumour-bearing patients (size > 0) of the ``patient_advantage`` table; rows without
    both values are left out.

    ``jobs`` > 1 fits the comparisons in that many worker processes (statsmodels' mixed
    model loops over patients in Python: about 0.6 s per comparison of 500 patients); the
    fits are deterministic, so the table is the same for any ``jobs``."""
    import pandas as pd

    tumour = advantages[advantages["size"] > 0].dropna(
        subset=["calf_value", "baseline_value", "advantage"])
    tasks = [(dict(zip(COMPARISON_KEYS, values)), rows, alpha) for values, rows in
             tumour.groupby(list(COMPARISON_KEYS), sort=False, dropna=False)]
    if jobs > 1 and len(tasks) > 1:
        parts = _in_workers(_comparison_task, tasks, jobs)
    else:
        parts = [_comparison_task(task) for task in tasks]
    return pd.DataFrame([row for part in parts for row in part],
                        columns=list(INTERACTION_COLUMNS))


def _in_workers(function, tasks: list, jobs: int) -> list:
    """``function`` of every task in ``jobs`` worker processes, in the tasks' order. Forked
    where the platform can (the workers then share the parent's imported statsmodels)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (4 * jobs))))


def _regime_summary(regimes: "pd.DataFrame") -> "pd.DataFrame":
    """Per (study, dataset, ratio): the means of S, K and the share of tumour slices over
    the training sets' profiles (folds), and their distinct branches joined with "+"."""
    frame = regimes.assign(ratio=regimes["ratio"].map(ratio_text),
                           share=regimes["n_tumour_slices"] / regimes["n_slices"])
    grouped = frame.groupby(list(REGIME_KEYS), sort=False)
    summary = grouped[["skewness", "kurtosis", "share"]].mean()
    summary["branch"] = grouped["branch"].agg(
        lambda b: BRANCH_SEPARATOR.join(sorted(b.dropna().astype(str).unique())))
    return summary.rename(columns={"share": "tumour_slice_ratio"}).reset_index()


def imbalance_table(advantages: "pd.DataFrame", regimes: "pd.DataFrame") -> "pd.DataFrame":
    """``imbalance.csv``: per comparison, its group's training-set regime (NaN where no
    profile matches) and the number of patients and median advantage over all of the
    group's patients, tumour-free ones included."""
    import pandas as pd

    frame = advantages.assign(ratio=advantages["ratio"].map(ratio_text))
    grouped = frame.groupby(list(COMPARISON_KEYS), sort=False, dropna=False)["advantage"]
    summary = pd.DataFrame({"n_patients": grouped.count(),
                            "median_advantage": grouped.median()}).reset_index()
    table = summary.merge(_regime_summary(regimes), on=list(REGIME_KEYS), how="left")
    return table[list(IMBALANCE_COLUMNS)]


def _trend_row(key: dict, rows: "pd.DataFrame", x: str) -> dict[str, object]:
    """Spearman's rho and p of the median advantage against x over one trend's groups
    (the natural training set has no ratio and is left out of a ratio trend)."""
    import scipy.stats

    values = (rows["ratio"].map(ratio_value).astype(float) if x == TREND_RATIO
              else rows["skewness"].astype(float))
    usable = values.notna() & rows["median_advantage"].notna()
    n = int(usable.sum())
    rho = p = float("nan")
    if n >= MIN_TREND_GROUPS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant input: NaN
            result = scipy.stats.spearmanr(values[usable], rows["median_advantage"][usable])
        rho, p = float(result.statistic), float(result.pvalue)
    return {**key, "x": x, "n_groups": n, "spearman_rho": rho, "p_value": p}


def trend_x(ratios: "pd.Series") -> str:
    """The x of a study's imbalance trend, from its groups' ratios: the filter ratio when
    the study has more than one numeric ratio, else the training sets' skewness."""
    numeric = {ratio_value(r) for r in ratios} - {None}
    return TREND_RATIO if len(numeric) > 1 else TREND_SKEWNESS


def trend_table(imbalance: "pd.DataFrame") -> "pd.DataFrame":
    """``imbalance_trend.csv``: per (study, model, metric, CALF loss, baseline), the trend
    of CALF's median advantage across the groups (datasets, ratios) against the filter
    ratio when the study has more than one, else against the training sets' skewness."""
    import pandas as pd

    out = []
    for values, rows in imbalance.groupby(list(TREND_KEYS), sort=False, dropna=False):
        key = dict(zip(TREND_KEYS, values))
        study = imbalance[imbalance["study"] == key["study"]]
        out.append(_trend_row(key, rows, trend_x(study["ratio"])))
    return pd.DataFrame(out, columns=list(TREND_COLUMNS))


def imbalance_advantage(advantages: "pd.DataFrame",
                        regimes: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """``imbalance.csv`` and ``imbalance_trend.csv`` from the ``patient_advantage`` and
    ``regimes`` tables (module docstring)."""
    imbalance = imbalance_table(advantages, regimes)
    return imbalance, trend_table(imbalance)
