"""The "where CALF helps" figures (calf.report.figures.advantage, .ranking) on hand-made
analysis tables: panels, points, curves, discs and filled cells counted by hand; the files
(PNG and SVG, no overwrite without force); and `calf report figures --analysis-dir`."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.patches import Rectangle

from calf.analysis.interaction import trend_x
from calf.cli import main
from calf.errors import CalfError
from calf.report.figures import (
    build_advantage_volume,
    build_imbalance_advantage,
    build_rank_blobs,
    build_significance_map,
    plot_advantage_volume,
    plot_imbalance_advantage,
    plot_rank_blobs,
    plot_significance_map,
)
from calf.report.figures.advantage import advantage_label, lowess_band
from calf.report.figures.ranking import (
    DISC_AREA,
    NOT_SIGNIFICANT_COLOUR,
    SIGNIFICANT_COLOUR,
    rank_quantiles,
)
from calf.synth.results import write_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROUP = {"study": "s", "dataset": "d", "model": "unet", "ratio": "natural"}


def _advantages(n: int = 12, tumour_free: int = 2, models=("unet", "fpn"),
                baselines=("bce", "dice"), calf_losses=("calf",), metric="dice",
                slope: float = 0.05) -> pd.DataFrame:
    """n patients per (model, baseline, calf loss): the first ``tumour_free`` of size 0,
    the others of sizes 1, 2, 4, ... ml, advantage = slope * log2(size) (0 when free)."""
    rows = []
    for model in models:
        for calf_loss in calf_losses:
            for baseline in baselines:
                for i in range(n):
                    size = 0.0 if i < tumour_free else float(2 ** (i - tumour_free))
                    advantage = slope * np.log2(size) if size > 0 else 0.0
                    rows.append({**GROUP, "model": model, "metric": metric,
                                 "calf_loss": calf_loss, "baseline": baseline,
                                 "subject_id": f"p{i}", "size": size, "size_unit": "ml",
                                 "size_class": "Q1", "calf_value": 0.5 + advantage,
                                 "baseline_value": 0.5, "diff": advantage,
                                 "advantage": advantage})
    return pd.DataFrame(rows)


def _panel_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def _scatters(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _curves(ax):
    return [line for line in ax.lines if len(line.get_xdata()) > 2]


# ---------------------------------------------------------------- advantage by tumour size

@pytest.mark.parametrize("models, calf_losses, panels", [
    (("unet",), ("calf",), 1),
    (("unet", "fpn"), ("calf",), 2),
    (("unet", "fpn"), ("calf", "calf_region"), 4),  # a row per CALF loss
])
def test_advantage_volume_panels(models, calf_losses, panels):
    fig = build_advantage_volume(_advantages(models=models, calf_losses=calf_losses))
    axes = _panel_axes(fig)
    assert len(axes) == panels
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert len(_scatters(ax)) == 2  # one per baseline
        assert [len(c.get_offsets()) for c in _scatters(ax)] == [12, 12]  # every patient
        assert len(_curves(ax)) == 2 and len(_bands(ax)) == 2
        assert any(line.get_ydata()[0] == 0 for line in ax.lines)  # the zero line


def test_advantage_volume_curve_follows_a_planted_slope():
    """advantage = 0.05 per doubling exactly: the LOWESS curve is that line and the band
    of every resample collapses onto it; tumour-free points sit left of the smallest size."""
    fig = build_advantage_volume(_advantages(models=("unet",), baselines=("bce",)))
    ax = _panel_axes(fig)[0]
    (curve,) = _curves(ax)
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    assert x.min() == pytest.approx(1.0) and x.max() == pytest.approx(512.0)
    np.testing.assert_allclose(y, 0.05 * np.log2(x), atol=1e-9)
    (points,) = _scatters(ax)
    offsets = np.asarray(points.get_offsets())
    assert (offsets[:2, 0] < 1.0).all() and (offsets[2:, 0] >= 1.0).all()
    assert ax.get_xlim()[0] < offsets[:2, 0].min()


def test_lowess_band_against_statsmodels_and_seeded():
    from statsmodels.nonparametric.smoothers_lowess import lowess

    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 8, 40))
    y = 0.1 * x + rng.normal(0, 0.05, x.size)
    # the figure's settings: frac 2/3, delta 1% of the range
    fitted = lowess(y, x, frac=2 / 3, it=0, delta=0.01 * np.ptp(x), return_sorted=False)
    curve, low, high = lowess_band(x, y, x, np.random.default_rng(1), resamples=50)
    np.testing.assert_allclose(curve, fitted, atol=1e-12)
    assert (low <= curve + 1e-12).mean() > 0.9 and (high >= curve - 1e-12).mean() > 0.9
    again = lowess_band(x, y, x, np.random.default_rng(1), resamples=50)
    np.testing.assert_array_equal(low, again[1])
    np.testing.assert_array_equal(high, again[2])


def test_advantage_volume_few_patients_points_only():
    """4 tumour-bearing patients (< 5): points, no curve, no band."""
    fig = build_advantage_volume(_advantages(n=6, models=("unet",), baselines=("bce",)))
    ax = _panel_axes(fig)[0]
    assert [len(c.get_offsets()) for c in _scatters(ax)] == [6]
    assert _curves(ax) == [] and _bands(ax) == []


@pytest.mark.parametrize("metric, sign", [("dice", "(CALF - baseline"),
                                          ("hd95", "(baseline - CALF, mm")])
def test_advantage_label_says_the_sign(metric, sign):
    assert sign in advantage_label(metric)
    fig = build_advantage_volume(_advantages(models=("unet",), metric=metric), metric=metric)
    assert sign in _panel_axes(fig)[0].get_ylabel()


def test_advantage_volume_empty_and_bad_tables():
    empty = build_advantage_volume(_advantages().iloc[0:0])
    assert "no per-patient advantages" in empty.axes[0].texts[0].get_text()
    other = build_advantage_volume(_advantages(), metric="nsd")  # no rows of that metric
    assert len(other.axes) == 1
    with pytest.raises(CalfError, match="patient_advantage table: missing column.*advantage"):
        build_advantage_volume(_advantages().drop(columns="advantage"))


# ---------------------------------------------------------------- advantage by imbalance

def _imbalance(ratios=("natural",)) -> pd.DataFrame:
    """2 datasets (S = 0.3, 2.0) x 2 models x 2 baselines x ``ratios``, metric Dice."""
    rows = []
    for dataset, skewness in (("a", 0.3), ("b", 2.0)):
        for model in ("unet", "fpn"):
            for k, baseline in enumerate(("bce", "dice")):
                for ratio in ratios:
                    rows.append({**GROUP, "dataset": dataset, "model": model, "ratio": ratio,
                                 "metric": "dice", "calf_loss": "calf", "baseline": baseline,
                                 "skewness": skewness, "kurtosis": 1.0, "branch": "ln",
                                 "tumour_slice_ratio": 0.1, "n_patients": 10,
                                 "median_advantage": 0.01 * (k + 1)})
    return pd.DataFrame(rows)


def test_imbalance_advantage_skewness():
    fig = build_imbalance_advantage(_imbalance())
    (ax,) = _panel_axes(fig)
    scatters = _scatters(ax)
    assert len(scatters) == 4  # one per (model, baseline)
    x = np.concatenate([np.asarray(c.get_offsets())[:, 0] for c in scatters])
    assert sorted(x) == [0.3] * 4 + [2.0] * 4
    assert sorted(t.get_text() for t in ax.texts) == ["a", "b"]  # a label per dataset
    assert "skewness" in ax.get_xlabel()


def test_imbalance_advantage_ratio():
    """A study with ratios: x = the ratio, the natural set at its tumour-slice share."""
    fig = build_imbalance_advantage(_imbalance(ratios=("natural", "0.25", "0.5")))
    (ax,) = _panel_axes(fig)
    x = np.concatenate([np.asarray(c.get_offsets())[:, 0] for c in _scatters(ax)])
    assert sorted(set(np.round(x, 6))) == [0.1, 0.25, 0.5] and len(x) == 24
    assert "filter ratio" in ax.get_xlabel()
    assert len([line for line in ax.lines if len(line.get_xdata()) == 3]) == 8  # the series


@pytest.mark.parametrize("ratios, expected", [(["natural"], "skewness"),
                                              (["natural", "0.25"], "skewness"),
                                              (["natural", "0.25", "0.5"], "ratio"),
                                              (["0.25", "0.25"], "skewness")])
def test_trend_x(ratios, expected):
    """The figure's axis is the trend table's x (calf.analysis.interaction.trend_x): a
    ratio axis needs two numeric ratios."""
    assert trend_x(pd.Series(ratios)) == expected


def test_imbalance_advantage_empty():
    fig = build_imbalance_advantage(_imbalance().iloc[0:0])
    assert "no median advantages" in fig.axes[0].texts[0].get_text()


# ---------------------------------------------------------------- blob plot

def _rank_tables(metrics=("dice",)):
    """3 losses: calf full rank 1 (rank 1 in 80 of 100, rank 2 in 20), dice 2 (rank 1:
    20, 2: 70, 3: 10), bce 3 (2: 10, 3: 90): 7 (loss, rank) cells with a share > 0."""
    counts = {"calf": (80, 20, 0), "dice": (20, 70, 10), "bce": (0, 10, 90)}
    full = {"calf": 1, "dice": 2, "bce": 3}
    rows, stability = [], []
    for metric in metrics:
        for loss, per_rank in counts.items():
            for rank, count in enumerate(per_rank, start=1):
                rows.append({**GROUP, "metric": metric, "loss": loss, "mean": 0.5,
                             "full_rank": full[loss], "rank": rank, "count": count,
                             "share": count / 100})
        stability.append({**GROUP, "metric": metric, "n_patients": 20, "resamples": 100,
                          "seed": 1, "best": "calf", "best_share": 0.8, "tau_median": 1.0,
                          "tau_low": 0.33, "tau_high": 1.0})
    return pd.DataFrame(rows), pd.DataFrame(stability)


@pytest.mark.parametrize("metrics", [("dice",), ("dice", "hd95")])
def test_rank_blobs_discs(metrics):
    counts, stability = _rank_tables(metrics)
    fig = build_rank_blobs(counts, stability)
    axes = _panel_axes(fig)
    assert len(axes) == len(metrics)
    ax = axes[0]
    discs, crosses = _scatters(ax)
    assert len(discs.get_offsets()) == 7
    np.testing.assert_allclose(sorted(discs.get_sizes()),
                               sorted(np.array([80, 20, 20, 70, 10, 10, 90]) / 100 * DISC_AREA))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CALF", "Dice", "BCE"]
    np.testing.assert_array_equal(np.asarray(crosses.get_offsets()), [[1, 1], [2, 2], [3, 3]])
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # rank 1 at the top
    assert "CALF best in 80% of 100" in ax.get_title() and "tau 1.00" in ax.get_title()


@pytest.mark.parametrize("ranks, counts, expected", [
    ((1, 2, 3), (50, 30, 20), (1, 1, 3)),
    ((1, 2, 3), (10, 80, 10), (1, 2, 3)),
    ((1, 2, 3), (0, 100, 0), (2, 2, 2)),
    ((1, 2, 3, 4), (0, 0, 96, 4), (3, 3, 4)),
])
def test_rank_quantiles_by_hand(ranks, counts, expected):
    part = pd.DataFrame({"rank": ranks, "count": counts})
    assert rank_quantiles(part) == expected


def test_rank_blobs_empty_and_bad_tables():
    counts, stability = _rank_tables()
    assert "no bootstrap rankings" in build_rank_blobs(counts.iloc[0:0], stability) \
        .axes[0].texts[0].get_text()
    with pytest.raises(CalfError, match="rank_counts table: missing column.*share"):
        build_rank_blobs(counts.drop(columns="share"), stability)


# ---------------------------------------------------------------- significance map

def _map(significant_pairs, as_text: bool = False) -> pd.DataFrame:
    losses = ("bce", "dice", "calf")
    rows = [{**GROUP, "metric": "dice", "loss_a": a, "loss_b": b, "n_patients": 20,
             "statistic": 1.0, "p_value": 0.01, "p_holm": 0.02,
             "significant": (a, b) in significant_pairs, "method": "exact"}
            for a in losses for b in losses if a != b]
    table = pd.DataFrame(rows)
    if as_text:  # as read back from a CSV with NaN elsewhere in the column
        table["significant"] = table["significant"].map(str)
    return table


def _cells(ax, colour):
    from matplotlib.colors import to_rgba

    return sorted((int(p.get_x() + 0.5), int(p.get_y() + 0.5)) for p in ax.patches
                  if isinstance(p, Rectangle) and p.get_facecolor() == to_rgba(colour))


@pytest.mark.parametrize("as_text", [False, True])
def test_significance_map_cells(as_text):
    counts, stability = _rank_tables()
    pairs = _map({("calf", "bce"), ("calf", "dice"), ("dice", "bce")}, as_text)
    fig = build_significance_map(pairs, stability, counts)
    (ax,) = _panel_axes(fig)
    # order by full rank: calf 0, dice 1, bce 2; cell (column a, row b)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CALF", "Dice", "BCE"]
    assert _cells(ax, SIGNIFICANT_COLOUR) == [(0, 1), (0, 2), (1, 2)]
    assert _cells(ax, NOT_SIGNIFICANT_COLOUR) == [(1, 0), (2, 0), (2, 1)]
    assert "3 of 6 ordered pairs significant, n = 20" in ax.get_title()


def test_significance_map_without_rank_counts_orders_by_wins():
    _, stability = _rank_tables()
    fig = build_significance_map(_map({("dice", "bce"), ("dice", "calf")}), stability)
    (ax,) = _panel_axes(fig)
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "Dice"
    assert len(_cells(ax, SIGNIFICANT_COLOUR)) == 2


def test_significance_map_empty():
    _, stability = _rank_tables()
    fig = build_significance_map(_map(set()).iloc[0:0], stability)
    assert "no pairwise tests" in fig.axes[0].texts[0].get_text()


# ---------------------------------------------------------------- files

def _writers():
    counts, stability = _rank_tables()
    return {
        "advantage_volume": lambda out, force: plot_advantage_volume(_advantages(), out,
                                                                     force=force),
        "imbalance_advantage": lambda out, force: plot_imbalance_advantage(_imbalance(), out,
                                                                           force=force),
        "rank_blobs": lambda out, force: plot_rank_blobs(counts, stability, out, force=force),
        "significance_map": lambda out, force: plot_significance_map(
            _map({("calf", "bce")}), stability, out, rank_counts=counts, force=force),
    }


@pytest.mark.parametrize("name", list(_writers()))
def test_plot_writes_png_and_svg_and_needs_force(tmp_path, name):
    write = _writers()[name]
    out = tmp_path / "figures" / name
    png, svg = write(out, False)
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert b"<svg" in svg.read_bytes()
    with pytest.raises(CalfError, match="already exists"):
        write(out, False)
    assert write(out, True) == [png, svg]


# ---------------------------------------------------------------- calf report figures

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A one-dataset study with its stats, and a complete analysis folder."""
    root = tmp_path_factory.mktemp("results")
    files = write_study(root, datasets=("sparse",), models=("unet",), losses=("bce", "calf"),
                        folds=1, cases_per_fold=6, epochs=1)
    assert main(["stats", "--metrics-root", str(root / "metrics"), "--study", "demo",
                 "--out-dir", str(root / "stats"), "--resamples", "50", *map(str, files)]) == 0
    analysis = root / "analysis"
    analysis.mkdir()
    counts, stability = _rank_tables()
    tables = {"patient_advantage": _advantages(), "imbalance": _imbalance(),
              "rank_counts": counts, "rank_stability": stability,
              "significance_map": _map({("calf", "bce")})}
    for name, table in tables.items():
        table.to_csv(analysis / f"{name}.csv", index=False)
    return root, files


def _figures(root, files, analysis, out) -> int:
    profiles = [a for p in sorted((root / "profiles").rglob("*.json"))
                for a in ("--profile", str(p))]
    return main(["report", "figures", "--metrics-root", str(root / "metrics"), "--study", "demo",
                 "--runs-root", str(root / "runs"), "--stats-dir", str(root / "stats"),
                 "--analysis-dir", str(analysis), *profiles, "--out-dir", str(out),
                 *map(str, files)])


def test_cli_draws_the_analysis_figures(study, tmp_path):
    root, files = study
    out = tmp_path / "figures"
    assert _figures(root, files, root / "analysis", out) == 0
    for name in ("advantage_volume", "imbalance_advantage", "rank_blobs", "significance_map"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert (out / f"{name}.svg").is_file()


@pytest.mark.parametrize("missing", ["patient_advantage", "imbalance", "rank_counts",
                                     "rank_stability", "significance_map"])
def test_cli_missing_analysis_table(study, tmp_path, capsys, missing):
    root, files = study
    analysis = tmp_path / "analysis"
    shutil.copytree(root / "analysis", analysis)
    (analysis / f"{missing}.csv").unlink()
    out = tmp_path / "figures"
    assert _figures(root, files, analysis, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{missing}.csv: no such file" in err
    assert not out.exists()


@pytest.mark.parametrize("extra, expected", [([], None), (["--analysis-root", "an"], "an")])
def test_cli_readme_passes_the_analysis_root_only_when_given(monkeypatch, extra, expected):
    import calf.report.readme

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(calf.report.readme, "write_readme", fake)
    assert main(["report", "readme", "--report-dir", "r", "--stats-root", "s", "--study",
                 "demo:sparse", "--out", "r/README.md", *extra]) == 0
    assert seen.get("analysis_root", None) == expected
    assert ("analysis_root" in seen) == (expected is not None)
