"""calf.stats (paired, friedman, run) and ``calf stats``: every statistic against scipy,
statsmodels and scikit-posthocs called directly, hand-computed values, and Demšar's (2006)
worked example."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs
import scipy.stats
from statsmodels.stats.multitest import multipletests

from calf.cli import main
from calf.errors import CalfError
from calf.stats.collect import load_case_metrics
from calf.stats.friedman import (
    critical_difference,
    friedman_chi2_from_ranks,
    friedman_test,
    iman_davenport,
    mean_ranks,
    nemenyi,
    q_alpha,
)
from calf.stats.paired import holm, median_ci, paired_test, rank_biserial, signed_rank_sums
from calf.stats.run import TABLES, StudyStats, compute_stats, write_stats
from calf.studies import defined_losses
from calf.synth.results import write_study

# Demšar (2006), JMLR 7:1-30, Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 data
# sets (adult (sample), breast cancer, breast cancer wisconsin, cmc, ionosphere, iris, liver
# disorders, lung cancer, lymphography, mushroom, primary tumor, rheum, voting, wine).
DEMSAR_AUC = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970],
])
VOTING = 12
# the paper's mean ranks: 3.143, 2.000, 2.893, 1.964
DEMSAR_RANKS = np.array([44, 28, 40.5, 27.5]) / 14

UNIT = "n_patients n_rows n_dropped_missing n_dropped_nan n_patients_dropped_nan"
OUTPUT_COLUMNS = {
    "paired": f"study dataset model ratio modality metric calf_loss baseline {UNIT} "
              "n_zero_diff mean_calf mean_baseline median_diff ci_low ci_high "
              "statistic p_value p_holm significant rank_biserial favours family family_size "
              "method",
    "friedman": f"study dataset model ratio modality metric {UNIT} k chi2 "
                "p_value iman_davenport_f iman_davenport_p alpha q_alpha cd",
    "ranks": "study dataset model ratio modality metric loss mean_rank mean median",
    "nemenyi": "study dataset model ratio modality metric loss_a loss_b p_value rank_diff "
               "significant",
}


def _demsar_published() -> np.ndarray:
    """Table 6 with the voting tie broken as the paper's ranks break it.

    The printed AUCs tie C4.5+cf and C4.5+m+cf on voting (0.975), the only row where those
    two tie; the paper's mean ranks (2.893, 1.964) are those of ranks 2 and 3 there, not
    2.5 and 2.5 (2.929, 1.929)."""
    table = DEMSAR_AUC.copy()
    table[VOTING, 2] += 1e-4
    return table


# -- Wilcoxon signed-rank test ---------------------------------------------------------

_RNG = np.random.default_rng(7)
_NORMAL_60 = _RNG.normal(size=60)
WILCOXON_CASES = [
    # differences, method scipy's "auto" picks
    (np.array([0.12, -0.03, 0.25, 0.07, 0.31, -0.11, 0.18, 0.05, 0.22, 0.14]), "exact"),
    (np.round(_RNG.normal(0.2, 1, size=30), 1), "approx"),  # ties
    (np.array([0.1, 0.0, 0.2, -0.05, 0.3, 0.0, 0.15, 0.4]), "permutation"),  # zeros, n <= 13
    (_NORMAL_60 + 0.3, "approx"),  # n > 50
    (DEMSAR_AUC[:, 1] - DEMSAR_AUC[:, 0], "approx"),  # zeros and ties, n = 14
]


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt", "zsplit"])
@pytest.mark.parametrize("diff, method", WILCOXON_CASES)
def test_wilcoxon_equals_scipy(diff, method, zero_method):
    baseline = np.linspace(0.2, 0.8, diff.size)
    calf = baseline + diff
    result = paired_test(calf, baseline, zero_method=zero_method, resamples=200,
                         rng=np.random.default_rng(0))
    direct = scipy.stats.wilcoxon(calf, baseline, zero_method=zero_method)
    assert result.statistic == direct.statistic
    assert result.p_value == direct.pvalue
    assert result.method == method
    assert result.n_pairs == diff.size and result.n_zero_diff == int((calf - baseline == 0).sum())
    assert result.mean_calf == pytest.approx(calf.mean())
    assert result.median_diff == pytest.approx(np.median(calf - baseline))


@pytest.mark.parametrize(
    "diff, zero_method, r_plus, r_minus",
    [
        # |d| 1 2 3 4 -> ranks 1 2 3 4; R+ = 1 + 3 + 4
        ([1, -2, 3, 0, 4], "wilcox", 8, 2),
        # the zero ranked first: ranks 2 3 4 1 5; its rank left out
        ([1, -2, 3, 0, 4], "pratt", 11, 3),
        # ... or split between R+ and R-
        ([1, -2, 3, 0, 4], "zsplit", 11.5, 3.5),
        # ties share ranks: |d| 1 1 2 2 -> 1.5 1.5 3.5 3.5
        ([1, -1, 2, 2], "wilcox", 8.5, 1.5),
        # Demšar (2006) section 3.1.3: C4.5+m vs C4.5, zeros split, R+ = 93, R- = 12
        (DEMSAR_AUC[:, 1] - DEMSAR_AUC[:, 0], "zsplit", 93, 12),
        # the same without the two zeros: ranks 1..12, R- = 1.5 + 5
        (DEMSAR_AUC[:, 1] - DEMSAR_AUC[:, 0], "wilcox", 71.5, 6.5),
    ],
)
def test_rank_biserial_hand(diff, zero_method, r_plus, r_minus):
    diff = np.asarray(diff, dtype=float)
    sums = signed_rank_sums(diff, zero_method)
    assert sums == pytest.approx((r_plus, r_minus))
    r = (r_plus - r_minus) / (r_plus + r_minus)
    assert rank_biserial(diff, zero_method) == pytest.approx(r)
    assert rank_biserial(-diff, zero_method) == pytest.approx(-r)


def test_all_zero_and_too_few_pairs():
    same = np.array([0.5, 0.7, 0.9, 1.0])
    result = paired_test(same, same.copy(), zero_method="wilcox", resamples=100,
                         rng=np.random.default_rng(0))
    assert result.method == "all zero" and result.p_value == 1.0
    assert math.isnan(result.statistic) and result.rank_biserial == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0) and result.n_zero_diff == 4
    one = paired_test(np.array([0.9]), np.array([0.5]), zero_method="wilcox", resamples=100,
                      rng=np.random.default_rng(0))
    assert math.isnan(one.p_value) and "too few pairs" in one.method
    assert one.median_diff == pytest.approx(0.4) and math.isnan(one.ci_low)


def test_bootstrap_ci_seeded_and_equal_to_scipy():
    diff = np.random.default_rng(3).normal(0.05, 0.1, size=80)
    first = median_ci(diff, 500, np.random.default_rng(11))
    assert first == median_ci(diff, 500, np.random.default_rng(11))
    assert first != median_ci(diff, 500, np.random.default_rng(12))
    assert first[0] <= np.median(diff) <= first[1]
    direct = scipy.stats.bootstrap((diff,), np.median, n_resamples=500, method="percentile",
                                   rng=np.random.default_rng(11)).confidence_interval
    assert first == (direct.low, direct.high)


# -- Holm ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "p, expected",
    [
        # sorted 0.005 0.01 0.03 0.04 times 4 3 2 1 = 0.02 0.03 0.06 0.04; running max
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        # NaN (no test) is outside the family: m = 2
        ([0.01, math.nan, 0.04], [0.02, math.nan, 0.04]),
        ([0.3, 0.5], [0.6, 0.6]),
        ([0.6, 0.9], [1.0, 1.0]),
    ],
)
def test_holm_hand(p, expected):
    np.testing.assert_allclose(holm(np.array(p)), expected, rtol=1e-12)


def test_holm_is_not_the_holm_sidak_default():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    sidak = multipletests(p)[1]  # statsmodels' default: Holm-Sidak
    np.testing.assert_allclose(sidak, [1 - 0.99**3, 1 - 0.97**2, 1 - 0.97**2, 1 - 0.995**4])
    assert not np.allclose(holm(p), sidak)


# -- Friedman, ranks, Nemenyi, critical difference (Demšar 2006) -----------------------

def test_demsar_mean_ranks():
    np.testing.assert_allclose(mean_ranks(_demsar_published(), higher_is_better=True),
                               DEMSAR_RANKS)
    assert np.round(DEMSAR_RANKS, 3).tolist() == [3.143, 2.0, 2.893, 1.964]
    # as printed (voting tied): average ranks 2.5 and 2.5 there
    np.testing.assert_allclose(mean_ranks(DEMSAR_AUC, True), np.array([44, 28, 41, 27]) / 14)
    # lower is better: the ranks mirror, k + 1 - r
    np.testing.assert_allclose(mean_ranks(DEMSAR_AUC, False), 5 - np.array([44, 28, 41, 27]) / 14)


def test_demsar_friedman_and_iman_davenport():
    chi2 = friedman_chi2_from_ranks(DEMSAR_RANKS, 14)
    assert round(chi2, 2) == 9.28
    f_value, f_p = iman_davenport(chi2, 14, 4)
    assert round(f_value, 2) == 3.69
    # F(3, 39) critical value at 0.05 is 2.85 (Demšar): the null is rejected
    assert f_p < 0.05 and round(scipy.stats.f.ppf(0.95, 3, 39), 2) == 2.85


def test_friedman_chi2_is_scipys_tie_corrected():
    table = _demsar_published()
    result = friedman_test(table)
    direct = scipy.stats.friedmanchisquare(*table.T)
    assert (result.chi2, result.p_value) == (direct.statistic, direct.pvalue)
    # ties within rows: mushroom (4 tied), lung cancer, iris, primary tumor (2 tied each):
    # C = 1 - sum(t^3 - t) / (N k (k^2 - 1)) = 1 - (60 + 3 * 6) / (14 * 4 * 15)
    uncorrected = friedman_chi2_from_ranks(DEMSAR_RANKS, 14)
    assert result.chi2 == pytest.approx(uncorrected / (1 - 78 / 840), rel=1e-12)
    assert (result.iman_davenport_f, result.iman_davenport_p) == iman_davenport(result.chi2, 14, 4)


@pytest.mark.parametrize("k, expected", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728),
                                         (6, 2.850)])
def test_q_alpha_demsar_table(k, expected):
    # the table has three decimals (k = 3: 2.3437 is printed as 2.343)
    assert q_alpha(k, 0.05) == pytest.approx(expected, abs=1e-3)


def test_demsar_critical_difference():
    q, cd = critical_difference(4, 14, 0.05)
    assert round(cd, 2) == 1.25
    assert cd == pytest.approx(q * math.sqrt(4 * 5 / (6 * 14)))


def test_nemenyi_equals_scikit_posthocs_and_demsar_conclusion():
    table = _demsar_published()
    direct = scikit_posthocs.posthoc_nemenyi_friedman(table).to_numpy()
    np.testing.assert_array_equal(nemenyi(table), direct)
    # direction does not change the p-values
    np.testing.assert_allclose(nemenyi(-table), direct, rtol=1e-12)
    # Demšar: C4.5 vs C4.5+m+cf differ by 1.179 < CD 1.25 (not at 0.05) but > 1.12 (at 0.10)
    assert 0.05 < direct[0, 3] < 0.10


@pytest.mark.parametrize("values, note", [
    (np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.1]]), "2 loss(es)"),
    (np.array([[0.1, 0.2, 0.3]]), "1 patient(s)"),
])
def test_friedman_undefined(values, note):
    result = friedman_test(values)
    assert math.isnan(result.chi2) and math.isnan(result.p_value) and note in result.note


def test_friedman_all_tied():
    result = friedman_test(np.ones((5, 3)))
    assert math.isnan(result.chi2) and result.p_value == 1.0


# -- compute_stats and calf stats end to end ------------------------------------------

def _stats_cli(paths, root: Path, out: Path, *extra: str) -> int:
    return main(["stats", "--metrics-root", str(root), "--study", "demo", "--out-dir", str(out),
                 "--resamples", "300", *extra, *map(str, paths)])


@pytest.fixture(scope="module")
def effect_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("effect")
    paths = write_study(root, datasets=("sparse",), models=("unet", "fpn"), folds=2,
                        cases_per_fold=12, effects={"calf": 0.3}, epochs=1)
    return root / "metrics", paths


@pytest.fixture(scope="module")
def effect_outputs(effect_study, tmp_path_factory):
    root, paths = effect_study
    out = tmp_path_factory.mktemp("effect_out") / "stats"
    assert _stats_cli(paths, root, out) == 0
    return {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False,
                              na_values=[""], dtype={"ratio": str})
            for name in OUTPUT_COLUMNS} | {"json": json.loads((out / "stats.json").read_text()),
                                            "dir": out}


def test_outputs_have_the_documented_columns(effect_outputs):
    for name, columns in OUTPUT_COLUMNS.items():
        assert list(effect_outputs[name].columns) == columns.split()
    record = effect_outputs["json"]
    assert record["format"] == 1 and record["study"] == "demo"
    assert set(record["handling"]) == {"unit", "missing", "nan", "ties", "zero_differences",
                                       "groups", "family"}
    unit = record["handling"]["unit"]
    assert unit.index("over the modalities") < unit.index("over the patient's exams") < unit.index(
        "then over seeds")
    assert record["settings"]["averaging"] == ["modality", "case_id", "seed"]
    # the fixture's companions are of the format before native scoring: said so
    assert record["settings"]["scoring"].startswith("Scoring: not recorded")
    assert (effect_outputs["paired"]["modality"] == "all").all()  # by_modality off
    for name in OUTPUT_COLUMNS:
        assert len(record[name]) == len(effect_outputs[name])
    assert record["settings"]["resamples"] == 300 and record["settings"]["family"] == "group"
    assert sorted(p.name for p in effect_outputs["dir"].iterdir()) == [
        "friedman.csv", "nemenyi.csv", "paired.csv", "ranks.csv", "stats.json"]


def test_effect_makes_calf_significant(effect_outputs):
    paired = effect_outputs["paired"]
    # 2 calf losses x 6 baselines x 2 metrics per group, 2 groups (unet, fpn)
    assert len(paired) == 48 and set(paired["family_size"]) == {24}
    assert (paired["ratio"] == "natural").all()
    calf = paired[paired["calf_loss"] == "calf"]
    assert calf["significant"].all() and (calf["favours"] == "calf").all()
    assert (calf[calf["metric"] == "dice"]["median_diff"] > 0).all()
    assert (calf[calf["metric"] == "hd95"]["median_diff"] < 0).all()  # lower is better
    # calf_region has no effect: hardly anything survives Holm
    region = paired[paired["calf_loss"] == "calf_region"]
    assert region["significant"].mean() <= 0.1
    ranks = effect_outputs["ranks"]
    dice = ranks[(ranks["metric"] == "dice") & (ranks["model"] == "unet")].set_index("loss")
    assert dice["mean_rank"].idxmin() == "calf"
    friedman = effect_outputs["friedman"]
    assert (friedman["p_value"] < 0.05).all() and (friedman["k"] == 8).all()
    assert (friedman["n_patients"] == 24).all()
    assert friedman["cd"].iloc[0] == pytest.approx(critical_difference(8, 24, 0.05)[1])


def test_paired_rows_equal_scipy_on_the_csvs(effect_study, effect_outputs):
    root, paths = effect_study
    frames = pd.concat([pd.read_csv(p) for p in paths if "/unet/" in str(p)])
    # the fixture's patients have one case and one modality each: patient = case
    wide = frames.pivot_table(index=["patient_id"], columns="loss", values="hd95")
    row = effect_outputs["paired"].query(
        "model == 'unet' and metric == 'hd95' and calf_loss == 'calf' and baseline == 'focal'"
    ).iloc[0]
    direct = scipy.stats.wilcoxon(wide["calf"], wide["focal"])
    assert row["n_patients"] == row["n_rows"] == len(wide) == 24
    assert row["statistic"] == direct.statistic
    assert row["p_value"] == pytest.approx(direct.pvalue, rel=1e-12)
    d = (wide["calf"] - wide["focal"]).to_numpy()
    assert row["rank_biserial"] == pytest.approx(rank_biserial(d, "wilcox"))
    assert row["ci_low"] <= row["median_diff"] <= row["ci_high"]
    # Holm over the group's 24 tests, by hand: step-down, running max, capped at 1
    group = effect_outputs["paired"].query("model == 'unet'")
    p = group["p_value"].to_numpy()
    order = np.argsort(p)
    adjusted = np.minimum(1, np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)))
    expected = np.empty_like(adjusted)
    expected[order] = adjusted
    np.testing.assert_allclose(group["p_holm"], expected, rtol=1e-12)


def test_nemenyi_rows_equal_scikit_posthocs(effect_study, effect_outputs):
    root, paths = effect_study
    frames = pd.concat([pd.read_csv(p) for p in paths if "/fpn/" in str(p)])
    wide = frames.pivot_table(index=["patient_id"], columns="loss", values="dice")
    losses = ["bce", "dice", "iou", "tversky", "focal", "combo", "calf", "calf_region"]
    direct = scikit_posthocs.posthoc_nemenyi_friedman(wide[losses].to_numpy())
    rows = effect_outputs["nemenyi"].query("model == 'fpn' and metric == 'dice'")
    assert len(rows) == 28
    for row in rows.itertuples():
        i, j = losses.index(row.loss_a), losses.index(row.loss_b)
        assert i < j and row.p_value == pytest.approx(direct.iloc[i, j], rel=1e-12)
        assert row.significant == (row.p_value < 0.05)


@pytest.mark.slow
def test_rerun_is_identical_and_refuses_foreign_files(effect_study, effect_outputs, tmp_path,
                                                     capsys):
    root, paths = effect_study
    out = effect_outputs["dir"]
    before = (out / "paired.csv").read_text()
    assert _stats_cli(paths, root, out) == 0  # over its own previous outputs
    assert (out / "paired.csv").read_text() == before  # seeded CIs: identical
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert _stats_cli(paths, root, mine) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(mine) in error and "--force" in error
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a file where the folder should be: refused, even with --force
    (tmp_path / "file").write_text("x")
    assert _stats_cli(paths, root, tmp_path / "file", "--force") == 2
    assert (tmp_path / "file").read_text() == "x"
    # --force replaces a folder calf stats did not write, as a whole
    assert _stats_cli(paths, root, mine, "--force") == 0
    assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in out.iterdir())
    assert (mine / "paired.csv").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _rewrite(path: Path, change) -> None:
    frame = pd.read_csv(path, keep_default_na=False)
    change(frame).to_csv(path, index=False)


@pytest.fixture()
def small_study(tmp_path):
    paths = write_study(tmp_path, datasets=("sparse",), models=("unet",), folds=2,
                        losses=("bce", "dice", "calf"), cases_per_fold=8, epochs=1)
    return tmp_path / "metrics", paths


def test_missing_case_is_an_error_naming_it(small_study, tmp_path, capsys):
    root, paths = small_study
    dice_csv = next(p for p in paths if "/dice/" in str(p) and p.name == "fold1.csv")
    case = pd.read_csv(dice_csv)["case_id"].iloc[3]
    _rewrite(dice_csv, lambda f: f.drop(index=3))
    out = tmp_path / "out" / "stats"
    assert _stats_cli(paths, root, out) == 2
    message = capsys.readouterr().err
    assert case in message and "loss dice" in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # --missing drop: the case leaves every test of the group, counted
    assert _stats_cli(paths, root, out, "--missing", "drop") == 0
    paired = pd.read_csv(out / "paired.csv")
    assert (paired["n_dropped_missing"] == 1).all() and (paired["n_patients"] == 15).all()
    friedman = pd.read_csv(out / "friedman.csv")
    assert (friedman["n_dropped_missing"] == 1).all() and (friedman["n_patients"] == 15).all()


def test_nan_metric_drops_the_pair_and_counts_it(small_study, tmp_path):
    root, paths = small_study
    bce_csv = next(p for p in paths if "/bce/" in str(p) and p.name == "fold0.csv")
    _rewrite(bce_csv, lambda f: f.assign(dice=f["dice"].where(f.index != 0, "")))
    out = tmp_path / "stats"
    assert _stats_cli(paths, root, out, "--metric", "dice", "--metric", "iou") == 0
    paired = pd.read_csv(out / "paired.csv").set_index(["metric", "baseline"])
    # the patient's only row is NaN for bce: the patient leaves that comparison
    assert paired.loc[("dice", "bce"), "n_dropped_nan"] == 1
    assert paired.loc[("dice", "bce"), "n_patients_dropped_nan"] == 1
    assert paired.loc[("dice", "bce"), "n_patients"] == 15
    assert paired.loc[("dice", "dice"), "n_dropped_nan"] == 0
    assert paired.loc[("dice", "dice"), "n_patients"] == 16
    assert paired.loc[("iou", "bce"), "n_dropped_nan"] == 0
    friedman = pd.read_csv(out / "friedman.csv").set_index("metric")
    assert friedman.loc["dice", "n_dropped_nan"] == 1 and friedman.loc["dice", "n_patients"] == 15


@pytest.mark.parametrize("extra, word", [(("--metric", "volume"), "volume"),
                                         (("--friedman-metric", "auc"), "auc"),
                                         (("--calf-loss", "calf_v2"), "calf_v2")])
def test_bad_options_name_the_value(small_study, tmp_path, capsys, extra, word):
    root, paths = small_study
    assert _stats_cli(paths, root, tmp_path / "stats", *extra) == 2
    assert word in capsys.readouterr().err
    assert not (tmp_path / "stats").exists()


def test_study_without_calf_names_the_study_and_losses(small_study):
    root, paths = small_study
    cases = load_case_metrics(paths, root)
    cases = cases[cases["loss"] != "calf"]
    stats = compute_stats(cases, study="demo", resamples=200)
    assert stats.paired.empty
    assert any("study 'demo' has no CALF loss" in note and "bce, dice" in note
               for note in stats.notes)
    assert set(stats.ranks["loss"]) == set(cases["loss"])  # the Friedman test still runs


def test_all_zero_and_two_losses(small_study):
    root, paths = small_study
    cases = load_case_metrics(paths, root)
    bce = cases[cases["loss"] == "bce"]
    calf = bce.assign(loss="calf")
    stats = compute_stats(pd.concat([bce, calf]), study="demo", metrics=["dice"],
                          friedman_metrics=["dice"], resamples=200)
    row = stats.paired.iloc[0]
    assert row["method"] == "all zero" and row["p_value"] == 1.0 and row["p_holm"] == 1.0
    assert row["rank_biserial"] == 0.0 and row["favours"] == "neither"
    assert (row["ci_low"], row["ci_high"]) == (0.0, 0.0) and not row["significant"]
    friedman = stats.friedman.iloc[0]
    assert friedman["k"] == 2 and math.isnan(friedman["chi2"])
    assert any("it needs 3" in note for note in stats.notes)
    assert math.isnan(stats.nemenyi["p_value"].iloc[0])


def test_seeds_ratio_and_study_family(tmp_path):
    paths = write_study(tmp_path, datasets=("sparse",), models=("unet",), folds=1,
                        losses=("bce", "dice", "calf"), cases_per_fold=10, ratios=(0.1, 0.5),
                        seeds=(1, 2), epochs=1)
    cases = load_case_metrics(paths, tmp_path / "metrics")
    stats = compute_stats(cases, study="demo", family="study", resamples=200)
    paired = stats.paired
    assert sorted(set(paired["ratio"])) == ["0.1", "0.5"]
    assert (paired["family_size"] == 8).all() and (paired["family"] == "demo").all()
    np.testing.assert_allclose(paired["p_holm"], holm(paired["p_value"].to_numpy()))
    # a patient's value (one case, one modality here): the mean over its two seeds
    row = paired.query("ratio == '0.1' and metric == 'dice' and baseline == 'bce'").iloc[0]
    subset = cases[(cases["ratio"] == "0.1") & (cases["loss"] == "calf")]
    assert row["n_patients"] == 10 and row["n_rows"] == 20
    assert row["mean_calf"] == pytest.approx(subset.groupby("case_id")["dice"].mean().mean())
    with pytest.raises(CalfError, match="exists and is not a folder"):
        (tmp_path / "file").write_text("x")
        write_stats(stats, tmp_path / "file")


def test_no_paired_runs_only_the_friedman_test(small_study, tmp_path):
    root, paths = small_study
    out = tmp_path / "stats"
    assert _stats_cli(paths, root, out, "--no-paired", "--resamples", "200") == 0
    assert pd.read_csv(out / "paired.csv").empty
    assert len(pd.read_csv(out / "friedman.csv")) > 0
    notes = json.loads((out / "stats.json").read_text())["notes"]
    assert any("no paired tests" in note for note in notes)


def test_readme_demo_power_figures_follow_from_the_demo_config():
    """The README's "What it can answer": patients per demo cohort, the smallest exact
    Wilcoxon p, its Holm-adjusted value over a group's family, and the minimum detectable
    standardised effect (80 % power, normal approximation with the Wilcoxon test's
    asymptotic relative efficiency 3/pi), from config/config.yaml and the workflow."""

    import yaml

    from calf.synth import layouts

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    patients = {
        name: len({patient for patient, _ in layouts.exam_plan(d["synth"]["layout"],
                                                               d["synth"]["cases"])})
        for name, d in config["datasets"].items()
    }
    assert len(set(patients.values())) == 1, patients
    n = patients.popitem()[1]
    stats = schema["properties"]["stats"]["properties"]
    calf_losses = len(stats["calf_losses"]["default"])
    losses = len(defined_losses(root / "workflow" / "rules"))
    family = calf_losses * (losses - calf_losses) * len(stats["metrics"]["default"])
    # the exact test's smallest p: every patient's difference of one sign
    p = scipy.stats.wilcoxon(np.arange(1.0, n + 1), method="exact").pvalue
    assert p == pytest.approx(2 / 2**n)
    z = scipy.stats.norm.ppf
    scale = math.sqrt(n * 3 / math.pi)
    strictest = (z(1 - 0.05 / family / 2) + z(0.8)) / scale
    loosest = (z(1 - 0.05 / 2) + z(0.8)) / scale
    text = " ".join((root / "README.md").read_text().split())
    claim = (f"with {n} patients per cohort the smallest exact two-sided Wilcoxon p is "
             f"2/2^{n} = {p:.1e}, which Holm's correction over a group's {family} tests "
             f"({calf_losses} CALF losses x {losses - calf_losses} baselines x Dice and HD95) "
             f"makes {p * family:.1e}")
    assert claim in text
    assert f"of about {strictest:.2f} is detected with 80 % power at Holm's strictest step, " \
           f"{loosest:.2f} at its last" in text


def test_write_stats_failure_keeps_the_previous_outputs(tmp_path):
    def study(columns: bool) -> StudyStats:
        frames = {name: pd.DataFrame(columns=list(cols) if columns else ["x"])
                  for name, cols in TABLES.items()}
        return StudyStats(study="s", settings={}, handling={}, **frames)

    out = tmp_path / "stats"
    paths = write_stats(study(True), out)
    assert [p.name for p in paths] == ["paired.csv", "friedman.csv", "ranks.csv",
                                       "nemenyi.csv", "stats.json"]
    assert json.loads((out / "stats.json").read_text())["study"] == "s"
    before = {p.name: p.read_text() for p in out.iterdir()}
    with pytest.raises(KeyError):  # a table without its columns fails half-way
        write_stats(study(False), out)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["stats"]  # no staging folder left


def test_cli_schema_and_api_share_the_defaults():
    """calf stats' options, the workflow schema's stats section and StatsOptions state the
    same defaults (each defined once, in calf.stats.run and calf.defaults)."""
    import argparse
    import dataclasses

    import yaml

    from calf.commands.stats import add_arguments
    from calf.naming import CALF_LOSSES
    from calf.stats.paired import ZERO_METHODS
    from calf.stats.run import FAMILIES, MISSING, StatsOptions

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--metrics-root", "r", "--study", "s", "--out-dir", "o", "x.csv"])
    api = {f.name: f.default for f in dataclasses.fields(StatsOptions)}
    assert api == {"metrics": ("dice", "hd95"), "friedman_metrics": ("dice", "hd95"),
                   "alpha": 0.05, "family": "group", "missing": "error",
                   "zero_method": "wilcox", "resamples": 2000, "seed": 12345,
                   "by_modality": False}
    for name in ("alpha", "family", "missing", "zero_method", "resamples", "seed",
                 "by_modality"):
        assert getattr(args, name) == api[name], name
    assert args.force is False
    schema = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    section = yaml.safe_load(schema.read_text())["properties"]["stats"]["properties"]
    assert {name: section[name]["default"] for name in api} == {
        name: list(value) if isinstance(value, tuple) else value for name, value in api.items()}
    assert section["family"]["enum"] == list(FAMILIES)
    assert section["missing"]["enum"] == list(MISSING)
    assert section["zero_method"]["enum"] == list(ZERO_METHODS)
    assert set(section["calf_losses"]["default"]) == set(CALF_LOSSES)


@pytest.mark.parametrize("option, value, message", [
    ("alpha", 1.0, "alpha 1.0: expected a number in"),
    ("family", "all", "family 'all': expected one of group, study"),
    ("missing", "skip", "missing 'skip': expected one of error, drop"),
    ("zero_method", "none", "zero_method 'none': expected one of wilcox, pratt, zsplit"),
    ("resamples", 0, "resamples 0: expected a positive number"),
    ("metrics", ("dice", "auc"), "metric 'auc': unknown metric"),
])
def test_options_name_the_bad_value(option, value, message):
    from calf.stats.run import StatsOptions

    with pytest.raises(CalfError, match=message):
        StatsOptions(**{option: value})
    with pytest.raises(TypeError, match="unknown option.s. alpah"):
        compute_stats(pd.DataFrame(), study="s", alpah=0.1)
