"""CALF against each baseline per tumour-size class (calf.analysis.size_effect), validated
on fixtures with an effect planted only for small tumours and on the null fixture."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy.stats import binom

from calf.analysis.size_effect import (
    BETTER,
    NO_DIFFERENCE,
    SIZE_CLASS_COLUMNS,
    WORSE,
    size_class_tests,
    verdict,
)
from calf.analysis.strata import ADVANTAGE_COLUMNS, NO_TUMOUR, patient_advantages, patient_sizes
from calf.synth.planted import planted_cases

ALPHA = 0.05
# class -> (low, high) of the hand-made tables
BOUNDS = {NO_TUMOUR: (0.0, 0.0), "B1": (0.0, 2.0), "B2": (2.0, math.inf)}


def advantage_rows(classes: dict[str, list[float]], *, metric: str = "dice",
                   baselines=("bce",), shift: float = 0.5) -> pd.DataFrame:
    """A patient_advantage table: class -> the patients' diffs (CALF - baseline), the
    baseline's value ``shift``; the same diffs against every baseline."""
    rows = []
    for baseline in baselines:
        for klass, diffs in classes.items():
            low, high = BOUNDS[klass]
            for i, diff in enumerate(diffs):
                rows.append({"study": "s", "dataset": "d", "model": "unet", "ratio": "natural",
                             "metric": metric, "calf_loss": "calf", "baseline": baseline,
                             "subject_id": f"{klass}/{i}", "size": low, "size_unit": "ml",
                             "size_class": klass, "class_low": low, "class_high": high,
                             "calf_value": shift + diff, "baseline_value": shift,
                             "diff": diff, "advantage": diff})
    return pd.DataFrame(rows, columns=list(ADVANTAGE_COLUMNS))


@pytest.mark.parametrize(
    ("significant", "r", "higher", "expected"),
    [(True, 0.5, True, BETTER), (True, -0.5, True, WORSE), (True, 0.5, False, WORSE),
     (True, -0.5, False, BETTER), (False, 0.9, True, NO_DIFFERENCE),
     (True, math.nan, True, NO_DIFFERENCE), (True, 0.0, True, NO_DIFFERENCE)],
)
def test_verdict(significant, r, higher, expected):
    assert verdict(significant, r, higher) == expected


def test_hand_checked_tests_order_and_family():
    # B2: 6 positive distinct diffs, exact Wilcoxon two-sided p = 2 / 2**6 = 0.03125;
    # B1: one patient, no test; no tumour: all zero, p = 1
    table = size_class_tests(advantage_rows({"B2": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                                             "B1": [0.3], NO_TUMOUR: [0.0, 0.0, 0.0]},
                                            baselines=("bce", "dice")), resamples=200, seed=1)
    assert list(table.columns) == list(SIZE_CLASS_COLUMNS)
    assert table["size_class"].tolist() == [NO_TUMOUR] * 2 + ["B1"] * 2 + ["B2"] * 2
    assert table["baseline"].tolist() == ["bce", "dice"] * 3
    b2 = table[table["size_class"] == "B2"].iloc[0]
    assert b2["p_value"] == pytest.approx(2 / 64)
    assert b2["median_diff"] == pytest.approx(0.35)
    assert b2["rank_biserial"] == 1.0 and b2["n_patients"] == 6
    # Holm over 4 tests with a p (2 x p=1, 2 x p=1/32): smallest x 4, next max(x 3, prior)
    assert table["family_size"].unique().tolist() == [4]
    assert table.loc[table["size_class"] == "B2", "p_holm"].tolist() == pytest.approx(
        [4 / 32, 4 / 32])
    assert not table["significant"].any()
    assert (table["verdict"] == NO_DIFFERENCE).all()
    b1 = table[table["size_class"] == "B1"]
    assert b1["p_value"].isna().all() and b1["method"].str.startswith("too few").all()
    assert table["family"].unique().tolist() == ["s/d/unet/dice"]
    assert table[["class_low", "class_high"]].iloc[-1].tolist() == [2.0, math.inf]


@pytest.mark.parametrize(("metric", "sign", "expected"), [("dice", 1, BETTER), ("dice", -1, WORSE),
                                                          ("hd95", -1, BETTER),
                                                          ("hd95", 1, WORSE)])
def test_verdict_follows_the_metric_direction(metric, sign, expected):
    # 10 distinct same-sign diffs: exact p = 2 / 1024, Holm over 2 tests: 4 / 1024
    diffs = [sign * 0.01 * (i + 1) for i in range(10)]
    table = size_class_tests(advantage_rows({"B1": diffs, "B2": [0.0, 0.0]}, metric=metric),
                             resamples=100, seed=0)
    b1 = table[table["size_class"] == "B1"].iloc[0]
    assert b1["p_holm"] == pytest.approx(4 / 1024)
    assert b1["verdict"] == expected
    assert table.iloc[-1]["verdict"] == NO_DIFFERENCE


def test_seeded_and_empty():
    rows = advantage_rows({"B1": [0.1, -0.2, 0.3, 0.05, 0.4]})
    first = size_class_tests(rows, resamples=100, seed=3)
    assert first.equals(size_class_tests(rows, resamples=100, seed=3))
    assert first["ci_low"].iloc[0] <= first["median_diff"].iloc[0] <= first["ci_high"].iloc[0]
    empty = size_class_tests(rows.iloc[:0], resamples=100, seed=0)
    assert empty.empty and list(empty.columns) == list(SIZE_CLASS_COLUMNS)


def planted_tests(*, metrics=("dice",), resamples=200, **kwargs) -> pd.DataFrame:
    cases = planted_cases(**kwargs)
    sizes, _ = patient_sizes(cases)
    advantages = patient_advantages(cases, sizes, ["calf"], list(metrics))
    return size_class_tests(advantages, alpha=ALPHA, zero_method="wilcox",
                            resamples=resamples, seed=kwargs.get("seed", 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["dice", "hd95"])
def test_planted_effect_detected_only_for_small_tumours(seed, metric):
    """effect=0.15 on the smallest quarter of tumour-bearing patients (= Q1 of 72):
    significant and favouring CALF there against each baseline, nowhere else."""
    table = planted_tests(metrics=(metric,), seed=seed, losses=("bce", "dice", "calf"))
    assert table["size_class"].unique().tolist() == [NO_TUMOUR, "Q1", "Q2", "Q3", "Q4"]
    q1 = table["size_class"] == "Q1"
    assert table.loc[q1, "verdict"].tolist() == [BETTER, BETTER]
    assert table.loc[q1, "n_patients"].tolist() == [18, 18]
    assert not table.loc[~q1, "significant"].any()
    assert table["family_size"].unique().tolist() == [10]  # 5 classes x 2 baselines


@pytest.mark.slow
def test_null_fixture_error_rate():
    """effect=0 (null) over 200 seeds, classes Q1..Q4 of 80 tumour-bearing patients (20 per
    class), one CALF-baseline pair: 800 independent per-class tests. Tolerance: the share
    significant at alpha = 0.05 (unadjusted p) lies within the 99 % binomial interval of
    Binomial(800, 0.05) / 800 (25 to 57 tests: 0.031 to 0.071), and the Holm family-wise rate (the
    share of the 200 seeds with any significant class) is at most the upper end of the
    99 % interval of Binomial(200, 0.05) / 200 (19 seeds: 0.095). Tumour-free patients are left out
    (tumour_free_share=0): their diffs are 0 or +-1 and the test at N < 14 only adds
    conservative p-values, so including them would only lower the rates."""
    n_seeds, n_classes = 200, 4
    raw, familywise = [], []
    for seed in range(n_seeds):
        table = planted_tests(effect=0.0, seed=seed, tumour_free_share=0.0, resamples=20)
        assert len(table) == n_classes
        raw += (table["p_value"] < ALPHA).tolist()
        familywise.append(bool(table["significant"].any()))
        # Holm rejects anything iff its first step does: min p < alpha / family size
        assert familywise[-1] == bool(table["p_value"].min() < ALPHA / n_classes)
    low, high = binom.interval(0.99, n_seeds * n_classes, ALPHA)
    assert low <= sum(raw) <= high
    assert sum(familywise) <= binom.interval(0.99, n_seeds, ALPHA)[1]
