"""calf.analysis.interaction: the mixed model against statsmodels called directly, planted
and null size interactions, the choice of method, the HD95 sign and the imbalance tables
on hand-made data with hand-checked values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.formula.api as smf

from calf.analysis.interaction import (
    IMBALANCE_COLUMNS,
    INTERACTION_COLUMNS,
    MIN_PATIENTS,
    MIXEDLM,
    THEIL_SEN,
    TREND_COLUMNS,
    imbalance_advantage,
    volume_interaction,
)
from calf.stats.collect import HIGHER_IS_BETTER

KEY = {"study": "s", "dataset": "d", "model": "m", "ratio": "natural", "calf_loss": "calf",
       "baseline": "dice_ce"}
SIZE_RANGE_ML = (0.2, 80.0)
BASE_DICE, PATIENT_SD = 0.7, 0.1


def advantages_frame(size, calf, baseline, metric="dice", **key) -> pd.DataFrame:
    """A patient_advantage table of one comparison from per-patient values."""
    size, calf, baseline = (np.asarray(v, dtype=float) for v in (size, calf, baseline))
    diff = calf - baseline
    return pd.DataFrame({**KEY, **key, "metric": metric,
                         "subject_id": [f"p{i:03d}" for i in range(size.size)],
                         "size": size, "size_unit": "ml",
                         "size_class": np.where(size > 0, "Q1", "no tumour"),
                         "calf_value": calf, "baseline_value": baseline, "diff": diff,
                         "advantage": diff if HIGHER_IS_BETTER[metric] else -diff})


def planted(seed: int, n: int, slope: float, metric="dice", noise=None) -> pd.DataFrame:
    """Patients whose advantage is 0.05 + slope * (log2 size - its mean) + noise (normal
    with sd 0.02 unless ``noise`` draws it), on a random per-patient baseline."""
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(*np.log(SIZE_RANGE_ML), n))
    x = np.log2(size)
    baseline = BASE_DICE + rng.normal(0, PATIENT_SD, n)
    error = rng.normal(0, 0.02, n) if noise is None else noise(rng, n)
    advantage = 0.05 + slope * (x - x.mean()) + error
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    return advantages_frame(size, baseline + sign * advantage, baseline, metric)


def row(table: pd.DataFrame, method: str) -> pd.Series:
    (index,) = np.flatnonzero(table["method"] == method)
    return table.iloc[index]


# statsmodels warns "MLE may be on the boundary" whenever a random-effect variance is below
# an absolute 0.01, which every Dice-scale variance is; the module silences it likewise
@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
def test_mixedlm_matches_statsmodels_called_directly():
    frame = planted(7, 40, 0.02)
    table = volume_interaction(frame)
    assert list(table.columns) == list(INTERACTION_COLUMNS)
    x = np.log2(frame["size"].to_numpy())
    long = pd.DataFrame({
        "subject": np.concatenate([frame["subject_id"]] * 2),
        "is_calf": np.repeat([1, 0], len(frame)),
        "log2_size": np.concatenate([x - x.mean()] * 2),
        "value": np.concatenate([frame["calf_value"], frame["baseline_value"]])})
    fit = smf.mixedlm("value ~ is_calf * log2_size", long, groups=long["subject"]).fit(reml=True)
    term = "is_calf:log2_size"
    got = row(table, MIXEDLM)
    assert got["slope_per_doubling"] == pytest.approx(fit.params[term], abs=1e-8)
    assert got["ci_low"] == pytest.approx(fit.conf_int(0.05).loc[term, 0], abs=1e-8)
    assert got["ci_high"] == pytest.approx(fit.conf_int(0.05).loc[term, 1], abs=1e-8)
    assert got["p_value"] == pytest.approx(fit.pvalues[term], abs=1e-8)
    assert got["converged"] is True and got["n_patients"] == 40
    # balanced design: the GLS interaction is the OLS slope of the within-patient contrast
    ols = scipy.stats.linregress(x, frame["advantage"]).slope
    assert got["slope_per_doubling"] == pytest.approx(ols, abs=1e-8)


def test_theil_sen_matches_scipy():
    frame = planted(8, 30, 0.02)
    got = row(volume_interaction(frame), THEIL_SEN)
    x = np.log2(frame["size"])
    slope, _, low, high = scipy.stats.theilslopes(frame["advantage"], x, alpha=0.95)
    assert (got["slope_per_doubling"], got["ci_low"], got["ci_high"]) == pytest.approx(
        (slope, low, high), abs=1e-12)
    assert got["p_value"] == pytest.approx(
        scipy.stats.kendalltau(frame["advantage"], x).pvalue, abs=1e-12)
    assert got["converged"] is None


@pytest.mark.parametrize("metric", ["dice", "hd95"])
@pytest.mark.parametrize("slope", [0.03, -0.02])
def test_planted_interaction_is_recovered_by_both_methods(metric, slope):
    table = volume_interaction(planted(3, 80, slope, metric))
    for method in (MIXEDLM, THEIL_SEN):
        got = row(table, method)
        assert got["ci_low"] < slope < got["ci_high"], method
        assert got["p_value"] < 0.001, method  # detected
        assert got["slope_per_doubling"] == pytest.approx(slope, abs=0.005)
    assert table["primary"].sum() == 1


def test_null_interaction_ci_covers_zero_for_most_seeds():
    seeds = range(40)
    tables = [volume_interaction(planted(seed, 30, 0.0)) for seed in seeds]
    for method in (MIXEDLM, THEIL_SEN):
        covered = sum(row(t, method)["ci_low"] < 0 < row(t, method)["ci_high"] for t in tables)
        assert covered >= 34, method  # nominal 95% of 40 = 38; binomial 1st percentile ~ 35


def test_normal_residuals_choose_the_mixed_model():
    table = volume_interaction(planted(11, 60, 0.01))
    assert table["normality_p"].iloc[0] >= 0.05
    assert row(table, MIXEDLM)["primary"] and not row(table, THEIL_SEN)["primary"]
    assert "mixed model (REML)" in table["reason"].iloc[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_heavy_tailed_residuals_choose_theil_sen(seed):
    def cauchy(rng, n):
        return 0.02 * rng.standard_cauchy(n)

    table = volume_interaction(planted(seed, 50, 0.02, noise=cauchy))
    assert table["normality_p"].iloc[0] < 0.05
    assert row(table, THEIL_SEN)["primary"] and not row(table, MIXEDLM)["primary"]
    assert "not normal" in row(table, THEIL_SEN)["reason"]


# log2 sizes 0..5; error orthogonal to 1 and x: least-squares slope of the advantage exactly 2
SIGN_SIZES = [1, 2, 4, 8, 16, 32]
SIGN_ERROR = [0.3, -0.3, 0.0, 0.0, -0.3, 0.3]
SIGN_BASELINE = [10.0, 14.0, 9.0, 12.0, 11.0, 13.0]


@pytest.mark.parametrize("metric,expected", [("hd95", 2.0), ("dice", -2.0)])
def test_lower_is_better_sign_flip(metric, expected):
    # CALF's value = baseline - 2 * log2 size - error: for HD95 (lower better) its
    # advantage grows by 2 mm per doubling; the same numbers read as Dice shrink by 2
    x = np.log2(SIGN_SIZES)
    calf = np.array(SIGN_BASELINE) - 2 * x - np.array(SIGN_ERROR)
    table = volume_interaction(advantages_frame(SIGN_SIZES, calf, SIGN_BASELINE, metric))
    assert row(table, MIXEDLM)["slope_per_doubling"] == pytest.approx(expected, abs=1e-8)
    theil = row(table, THEIL_SEN)
    assert np.sign(theil["slope_per_doubling"]) == np.sign(expected)
    assert abs(theil["slope_per_doubling"]) == pytest.approx(2.0, abs=0.2)


def test_too_few_patients_and_tumour_free_patients():
    frame = planted(5, MIN_PATIENTS - 1, 0.02)
    free = advantages_frame([0.0] * 10, [0.9] * 10, [0.5] * 10)
    table = volume_interaction(pd.concat([frame, free], ignore_index=True))
    assert len(table) == 2 and (table["n_patients"] == MIN_PATIENTS - 1).all()
    assert table[["slope_per_doubling", "ci_low", "ci_high", "p_value"]].isna().all().all()
    assert row(table, THEIL_SEN)["primary"] and "too few" in table["reason"].iloc[0]


def test_constant_sizes_give_no_slope():
    table = volume_interaction(advantages_frame([3.0] * 8, np.linspace(0.5, 0.9, 8), [0.6] * 8))
    assert table["slope_per_doubling"].isna().all()
    assert "do not vary" in table["reason"].iloc[0]


def test_comparisons_are_separate():
    one, two = planted(1, 20, 0.03), planted(2, 20, -0.03)
    two["baseline"] = "focal"
    table = volume_interaction(pd.concat([one, two], ignore_index=True))
    assert list(table["baseline"]) == ["dice_ce", "dice_ce", "focal", "focal"]
    assert table.groupby("baseline")["primary"].sum().tolist() == [1, 1]
    slopes = table.groupby("baseline")["slope_per_doubling"].mean()
    assert slopes["dice_ce"] > 0 > slopes["focal"]


def test_worker_processes_give_the_same_table():
    parts = []
    for i, baseline in enumerate(("dice_ce", "focal", "bce")):
        part = planted(10 + i, 30, 0.02 * (i - 1))
        parts.append(part.assign(baseline=baseline))
    frame = pd.concat(parts, ignore_index=True)
    serial = volume_interaction(frame)
    parallel = volume_interaction(frame, jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert len(serial) == 6


def test_empty_input_gives_empty_tables():
    empty = planted(1, 5, 0.0).iloc[:0]
    assert volume_interaction(empty).empty
    imbalance, trend = imbalance_advantage(empty, REGIMES.iloc[:0])
    assert imbalance.empty and trend.empty
    assert list(trend.columns) == list(TREND_COLUMNS)


def regime(study, dataset, ratio, fold, n_slices, n_tumour, skewness, kurtosis, branch):
    return {"study": study, "dataset": dataset, "ratio": ratio, "fold": fold,
            "n_slices": n_slices, "n_tumour_slices": n_tumour,
            "tumour_slice_ratio": n_tumour / n_slices, "skewness": skewness,
            "kurtosis": kurtosis, "branch": branch, "area_definition": "tumour",
            "source": f"profiles/{study}/{dataset}/fold{fold}.json"}


# study "f" filters one dataset at four ratios (and keeps the natural set); study "n" has
# four datasets at the natural ratio, so its trend is against S
REGIMES = pd.DataFrame([
    regime("f", "a", "0.1", 0, 100, 10, 1.0, 2.0, "kappa"),
    regime("f", "a", "0.1", 1, 200, 30, 3.0, 4.0, "gamma"),
    regime("f", "a", "0.25", 0, 100, 25, 0.5, 1.0, "kappa"),
    regime("f", "a", "0.6", 0, 100, 60, 0.2, 1.0, "kappa"),
    regime("f", "a", "0.85", 0, 100, 85, 0.1, 1.0, "kappa"),
    regime("f", "a", "natural", 0, 100, 5, 2.0, 6.0, "gamma"),
    *(regime("n", d, "natural", 0, 100, 10, s, 3.0, "gamma")
      for d, s in zip("pqrs", [0.4, 0.3, 0.2, 0.1])),
])


def group_patients(study, dataset, ratio, advantages, metric="dice"):
    """One group's patients with these advantages (calf = 0.5 + advantage, baseline 0.5)."""
    n = len(advantages)
    calf = 0.5 + np.asarray(advantages, dtype=float)
    return advantages_frame(np.arange(n, dtype=float), calf, [0.5] * n, metric,
                            study=study, dataset=dataset, ratio=ratio)


# median advantages: f by ratio 0.1, 0.25, 0.6, 0.85 -> 0.1, 0.3, 0.2, 0.4 (rho = 0.8);
# natural 0.9 (no ratio: left out); n by S 0.4, 0.3, 0.2, 0.1 -> 1, 2, 3, 4 (rho = -1)
ADVANTAGES = pd.concat([
    group_patients("f", "a", "0.1", [0.0, 0.1, 0.5]),
    group_patients("f", "a", "0.25", [0.3, 0.2, 0.4, 0.35]),
    group_patients("f", "a", "0.6", [0.2]),
    group_patients("f", "a", "0.85", [0.4, 0.4]),
    group_patients("f", "a", "natural", [0.9]),
    *(group_patients("n", d, "natural", [m]) for d, m in zip("pqrs", [1, 2, 3, 4])),
], ignore_index=True)


def test_imbalance_table_hand_checked():
    imbalance, _ = imbalance_advantage(ADVANTAGES, REGIMES)
    assert list(imbalance.columns) == list(IMBALANCE_COLUMNS)
    first = imbalance.iloc[0]  # f/a/0.1: two folds
    assert first["ratio"] == "0.1" and first["n_patients"] == 3
    assert first["skewness"] == pytest.approx(2.0) and first["kurtosis"] == pytest.approx(3.0)
    assert first["tumour_slice_ratio"] == pytest.approx((0.1 + 0.15) / 2)
    assert first["branch"] == "gamma+kappa"
    assert first["median_advantage"] == pytest.approx(0.1)
    medians = dict(zip(imbalance["dataset"] + "/" + imbalance["ratio"],
                       imbalance["median_advantage"]))
    assert medians == pytest.approx({"a/0.1": 0.1, "a/0.25": 0.325, "a/0.6": 0.2,
                                     "a/0.85": 0.4, "a/natural": 0.9, "p/natural": 1,
                                     "q/natural": 2, "r/natural": 3, "s/natural": 4})


def test_imbalance_counts_tumour_free_patients_and_missing_profiles():
    frame = group_patients("f", "a", "0.6", [0.1, 0.2, 0.9])
    frame.loc[0, "size"] = 0.0
    extra = group_patients("f", "b", "0.6", [0.3])  # no profile for dataset b
    imbalance, _ = imbalance_advantage(pd.concat([frame, extra]), REGIMES)
    assert imbalance["n_patients"].tolist() == [3, 1]
    assert imbalance["median_advantage"].tolist() == pytest.approx([0.2, 0.3])
    assert math.isnan(imbalance["skewness"].iloc[1])


def test_imbalance_trend_hand_checked():
    _, trend = imbalance_advantage(ADVANTAGES, REGIMES)
    assert list(trend.columns) == list(TREND_COLUMNS)
    by_study = trend.set_index("study")
    f, n = by_study.loc["f"], by_study.loc["n"]
    assert (f["x"], f["n_groups"]) == ("ratio", 4)
    # ranks 1,2,3,4 against 1,3,2,4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert f["spearman_rho"] == pytest.approx(0.8)
    assert f["p_value"] == pytest.approx(
        scipy.stats.spearmanr([0.1, 0.25, 0.6, 0.85], [0.1, 0.325, 0.2, 0.4]).pvalue)
    assert (n["x"], n["n_groups"], n["spearman_rho"]) == ("skewness", 4, pytest.approx(-1.0))


def test_imbalance_trend_needs_three_groups():
    few = ADVANTAGES[ADVANTAGES["dataset"].isin(["p", "q"])]
    _, trend = imbalance_advantage(few, REGIMES)
    assert trend["n_groups"].tolist() == [2]
    assert trend[["spearman_rho", "p_value"]].isna().all().all()


def test_trend_is_per_metric_and_baseline():
    hd95 = ADVANTAGES.assign(metric="hd95", advantage=-ADVANTAGES["advantage"])
    _, trend = imbalance_advantage(pd.concat([ADVANTAGES, hd95]), REGIMES)
    assert len(trend) == 4
    rho = trend.set_index(["study", "metric"])["spearman_rho"]
    assert rho[("f", "hd95")] == pytest.approx(-0.8) and rho[("n", "hd95")] == pytest.approx(1)
