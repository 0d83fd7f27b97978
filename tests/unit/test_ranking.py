"""calf.stats.ranking: the bootstrap of a ranking over patients and the significance map."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, rankdata

from calf.defaults import ALPHA, SEED
from calf.errors import CalfError
from calf.stats.ranking import bootstrap_ranks, significance_map

LOSSES = ["a", "b", "c"]
# 3 patients x 3 losses; means a = 8, b = 5, c = 2
HAND = np.array([[9.0, 5.0, 1.0], [8.0, 6.0, 2.0], [7.0, 4.0, 3.0]])


@pytest.mark.parametrize("higher, ranks", [(True, [1, 2, 3]), (False, [3, 2, 1])])
def test_full_ranking_by_mean(higher, ranks):
    result = bootstrap_ranks(HAND, LOSSES, higher, resamples=10)
    assert result.ranking["mean"].tolist() == [8.0, 5.0, 2.0]
    assert result.ranking["rank"].tolist() == ranks
    assert result.best == LOSSES[ranks.index(1)]
    assert result.n_patients == 3 and result.n_patients_dropped_nan == 0
    assert (result.rank_counts.sum(axis=1) == 10).all()
    assert result.rank_counts.columns.tolist() == [1, 2, 3]


def test_tied_means_share_the_lowest_rank():
    values = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    result = bootstrap_ranks(values, LOSSES, True, resamples=5)
    assert result.ranking["rank"].tolist() == [1, 1, 3]
    assert result.best == "a" and result.best_share == 1.0


def test_nan_patients_dropped_and_counted():
    values = np.vstack([HAND, [np.nan, 1.0, 1.0]])
    result = bootstrap_ranks(values, LOSSES, True, resamples=5)
    assert result.n_patients == 3 and result.n_patients_dropped_nan == 1
    assert result.ranking["mean"].tolist() == [8.0, 5.0, 2.0]


@pytest.mark.parametrize("higher", [True, False])
def test_hand_significance_map(higher):
    table = significance_map(HAND, LOSSES, higher, alpha=ALPHA).set_index(["loss_a", "loss_b"])
    assert len(table) == 6
    better = [("a", "b"), ("a", "c"), ("b", "c")]
    if not higher:
        better = [(y, x) for x, y in better]
    for pair in better:
        # all 3 differences favour the first loss: exact one-sided p = 1 / 2**3
        assert table.loc[pair, "p_value"] == pytest.approx(0.125)
        # Holm over 6: three p = 0.125 -> 6 * 0.125 = 0.75 (step-down maxima)
        assert table.loc[pair, "p_holm"] == pytest.approx(0.75)
        reverse = pair[::-1]
        assert table.loc[reverse, "p_value"] == pytest.approx(1.0)
        assert table.loc[reverse, "p_holm"] == pytest.approx(1.0)
    # b - c = 4, 4, 1 has tied |differences|: scipy's auto picks the permutation method
    assert table.loc[better[2], "method"] == "permutation"
    assert not table["significant"].any()


def test_all_zero_pair_gets_p_one():
    values = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    table = significance_map(values, ["a", "b"], True)
    assert table["method"].tolist() == ["all zero", "all zero"]
    assert table["p_value"].tolist() == [1.0, 1.0]


def planted(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.8, size=(n, 1))
    return base + np.array([0.2, 0.1, 0.0]) + rng.normal(0, 0.02, size=(n, 3))


def test_planted_best_stays_best():
    result = bootstrap_ranks(planted(), LOSSES, True, resamples=500)
    assert result.best == "a"
    assert result.best_share > 0.95
    assert result.tau_median == 1.0
    table = significance_map(planted(), LOSSES, True).set_index(["loss_a", "loss_b"])
    assert table.loc[[("a", "b"), ("a", "c"), ("b", "c")], "significant"].all()
    assert not table.loc[[("b", "a"), ("c", "a"), ("c", "b")], "significant"].any()


def test_null_family_wise_error_rate():
    # exchangeable losses: Holm keeps the chance of any rejection among the 6 ordered
    # pairs at or below alpha; 400 seeds -> allow 3 binomial standard errors above it
    # (statsmodels' Holm runs gc.collect() on every call; freezing the objects alive now
    # keeps each collection short)
    seeds = 400
    hits = 0
    gc.freeze()
    try:
        for seed in range(seeds):
            values = np.random.default_rng(seed).normal(size=(30, 3))
            table = significance_map(values, LOSSES, True, alpha=ALPHA)
            hits += bool(table["significant"].any())
    finally:
        gc.unfreeze()
    tolerance = 3 * np.sqrt(ALPHA * (1 - ALPHA) / seeds)
    assert hits / seeds <= ALPHA + tolerance


def test_seeded_reproducibility():
    values = np.random.default_rng(1).normal(size=(20, 3))
    first = bootstrap_ranks(values, LOSSES, True, resamples=200)
    again = bootstrap_ranks(values, LOSSES, True, resamples=200)
    other = bootstrap_ranks(values, LOSSES, True, resamples=200, seed=SEED + 1)
    assert first.seed == SEED
    pd.testing.assert_frame_equal(first.rank_counts, again.rank_counts)
    pd.testing.assert_frame_equal(first.tau, again.tau)
    assert not first.rank_counts.equals(other.rank_counts)


@pytest.mark.parametrize("higher", [True, False])
def test_tau_matches_scipy_directly(higher):
    values = np.random.default_rng(2).normal(size=(15, 4))
    losses = ["a", "b", "c", "d"]
    result = bootstrap_ranks(values, losses, higher, resamples=50, seed=7)
    sign = -1 if higher else 1
    full = rankdata(sign * values.mean(axis=0), method="min")
    rows = np.random.default_rng(7).integers(0, 15, size=(50, 15))
    expected = [kendalltau(rankdata(sign * values[r].mean(axis=0), method="min"),
                           full).statistic for r in rows]
    np.testing.assert_allclose(result.tau["tau"].to_numpy(), expected)
    assert result.tau_median == pytest.approx(np.nanmedian(expected))
    assert result.tau_low == pytest.approx(np.nanquantile(expected, 0.025))


@pytest.mark.parametrize("values, losses, resamples, message", [
    (np.ones((3, 1)), ["a"], 10, "at least 2"),
    (np.ones((1, 3)), LOSSES, 10, "1 patient"),
    (np.array([[1.0, 2.0], [np.nan, 1.0]]), ["a", "b"], 10, "1 dropped"),
    (np.ones((3, 3)), ["a", "b"], 10, "3 columns but 2 losses"),
    (np.ones(3), LOSSES, 10, "shape"),
    (np.ones((3, 2)), ["a", "a"], 10, "repeat"),
    (HAND, LOSSES, 0, "resamples 0"),
])
def test_bad_input(values, losses, resamples, message):
    with pytest.raises(CalfError, match=message):
        bootstrap_ranks(values, losses, True, resamples=resamples)
    if resamples >= 1:
        with pytest.raises(CalfError, match=message):
            significance_map(values, losses, True)


def test_bad_alpha():
    with pytest.raises(CalfError, match="alpha"):
        significance_map(HAND, LOSSES, True, alpha=1.5)
