"""calf.report.figures: the report's figures from a small but real results tree.

Structure is checked on the Figures that the ``build_*`` functions return (panels, labels,
the values drawn); the files on the written PNG and SVG (magic bytes, XML), byte-identical
on a second run, and nothing left behind on failure.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import scikit_posthocs
import scipy.stats
from matplotlib.collections import PathCollection
from matplotlib.patches import StepPatch

from calf.errors import CalfError
from calf.report.figures import (
    branch_shares,
    build_branch_shares,
    build_critical_difference,
    build_dice,
    build_imbalance,
    build_overlays,
    collect_overlays,
    plot_branch_shares,
    plot_critical_difference,
    plot_dice,
    plot_imbalance,
    plot_overlays,
)
from calf.report.figures._common import BRANCH_COLOURS, CALF_COLOUR, message_figure, save_figure
from calf.report.figures.imbalance import S_MAX, THRESHOLDS
from calf.stats.collect import load_case_metrics
from calf.synth.results import write_study

LOSSES = ("bce", "dice", "calf", "calf_region")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 datasets x 2 models x 4 losses x 2 folds x 8 cases, with profiles and runs."""
    root = tmp_path_factory.mktemp("results")
    files = write_study(root, losses=LOSSES, cases_per_fold=8, epochs=3)
    return {"root": root, "files": files, "cases": load_case_metrics(files, root / "metrics"),
            "runs": sorted(p.parent for p in (root / "runs").rglob("run.json")),
            "profiles": sorted((root / "profiles").rglob("*.json"))}


def stats_tables(cases: pd.DataFrame, metric: str = "dice", alpha: float = 0.05):
    """ranks, nemenyi, friedman as calf stats lays them out, from scipy directly
    (the fixture's cases are one patient each, one modality: the pooled-modality groups)."""
    ranks, pairs, friedman = [], [], []
    for key, part in cases.groupby(["study", "dataset", "model", "ratio"]):
        group = dict(zip(("study", "dataset", "model", "ratio"), key)) | {"modality": "all"}
        wide = part.pivot_table(index=["case_id", "modality"], columns="loss", values=metric)
        losses, n = list(wide.columns), len(wide)
        k = len(losses)
        mean_rank = scipy.stats.rankdata(-wide.to_numpy(), axis=1).mean(axis=0)
        chi2, p = scipy.stats.friedmanchisquare(*wide.to_numpy().T)
        q = scipy.stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
        friedman.append({**group, "metric": metric, "n_patients": n, "k": k, "chi2": chi2,
                         "p_value": p, "alpha": alpha, "q_alpha": q,
                         "cd": q * np.sqrt(k * (k + 1) / (6 * n))})
        ranks += [{**group, "metric": metric, "loss": loss, "mean_rank": r}
                  for loss, r in zip(losses, mean_rank)]
        nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(wide.to_numpy())
        pairs += [{**group, "metric": metric, "loss_a": losses[a], "loss_b": losses[b],
                   "p_value": float(nemenyi.iloc[a, b]), "significant": nemenyi.iloc[a, b] < alpha}
                  for a in range(k) for b in range(a + 1, k)]
    return pd.DataFrame(ranks), pd.DataFrame(pairs), pd.DataFrame(friedman)


def texts(fig) -> list[str]:
    """Every text the figure shows: titles, labels, tick labels, annotations."""
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def check_outputs(paths: list[Path], prefix: Path) -> None:
    assert paths == [Path(f"{prefix}.png"), Path(f"{prefix}.svg")]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert matplotlib.image.imread(png).shape[0] > 100
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert not [p for p in prefix.parent.iterdir() if ".tmp-" in p.name]


def test_branch_colours_follow_the_losses_branches():
    from calf.losses import BRANCHES

    assert tuple(BRANCH_COLOURS) == BRANCHES


@pytest.mark.parametrize("kind", ["dice", "hd95", "critical_difference", "imbalance", "branches"])
def test_every_plot_writes_png_and_svg(study, tmp_path, kind):
    prefix = tmp_path / "sub" / kind
    if kind in ("dice", "hd95"):
        paths = plot_dice(study["cases"], prefix, kind, "Scored on the training grid")
    elif kind == "critical_difference":
        paths = plot_critical_difference(*stats_tables(study["cases"]), prefix)
    elif kind == "imbalance":
        paths = plot_imbalance(study["profiles"], prefix)
    else:
        paths = plot_branch_shares(study["runs"], prefix, runs_root=study["root"] / "runs")
    check_outputs(paths, prefix)


def test_hd95_figure_says_lower_is_better_and_how_it_was_scored(study):
    fig = build_dice(study["cases"], "hd95", "Scored on each case's original grid; HD95 in mm")
    title = fig.texts[0].get_text()
    assert title.startswith("HD95 per patient (lower is better)")
    assert title.endswith("Scored on each case's original grid; HD95 in mm")


def test_dice_panels_and_points(study):
    cases = study["cases"]
    fig = build_dice(cases)
    axes = np.array(fig.axes).reshape(2, 2)  # rows bulky, sparse; columns U-Net, FPN
    assert [ax.get_title() for ax in axes[0]] == ["U-Net", "FPN"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["bulky\nDice", "sparse\nDice"]
    assert [t.get_text() for t in axes[1, 0].get_xticklabels()] == [
        "BCE", "Dice", "CALF", "Region-specific"]
    # the sparse / FPN panel: one point per case and loss, at that case's Dice
    points = [c for c in axes[1, 1].collections if isinstance(c, PathCollection)]
    assert len(points) == 4
    for loss, collection in zip(LOSSES, points):
        expected = cases.query("dataset == 'sparse' and model == 'fpn' and loss == @loss")["dice"]
        drawn = collection.get_offsets()
        assert sorted(drawn[:, 1]) == pytest.approx(sorted(expected))
        position = LOSSES.index(loss) + 1
        assert np.all(np.abs(drawn[:, 0] - position) <= 0.18)
    assert points[2].get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb(CALF_COLOUR))


def test_dice_averages_seeds_and_rows_per_ratio(tmp_path):
    files = write_study(tmp_path, datasets=("sparse",), models=("unet",), losses=("bce", "calf"),
                        folds=1, cases_per_fold=6, ratios=[0.5, 0.1], seeds=[1, 2])
    cases = load_case_metrics(files, tmp_path / "metrics")
    fig = build_dice(cases)
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["sparse, ratio 0.1\nDice",
                                                   "sparse, ratio 0.5\nDice"]
    drawn = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)][1]
    calf = cases.query("loss == 'calf' and ratio == '0.1'")
    means = calf.groupby("case_id")["dice"].mean()
    assert len(drawn.get_offsets()) == 6 == len(means)
    assert sorted(drawn.get_offsets()[:, 1]) == pytest.approx(sorted(means))


def test_dice_is_deterministic(study, tmp_path):
    first = plot_dice(study["cases"], tmp_path / "a")
    second = plot_dice(study["cases"], tmp_path / "b")
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()


def test_critical_difference_panels(study):
    ranks, nemenyi, friedman = stats_tables(study["cases"])
    friedman.loc[friedman["dataset"] == "bulky", "cd"] = np.nan  # a group with no usable test
    fig = build_critical_difference(ranks, nemenyi, friedman)
    axes = np.array(fig.axes).reshape(2, 2)  # rows bulky, sparse; columns U-Net, FPN
    for ax, model in zip(axes[1], ("unet", "fpn")):
        row = friedman.query("dataset == 'sparse' and model == @model").iloc[0]
        title = ax.get_title()
        assert f"CD = {row['cd']:.2f}" in title and "Friedman p = " in title
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
        labels = [t.get_text() for t in ax.texts]
        assert f"CD = {row['cd']:.2f}" in labels
        assert sum("CALF (" in t or ") CALF" in t for t in labels) == 1
    for ax in axes[0]:
        assert [t.get_text() for t in ax.texts] == ["not enough data for a Friedman test"]


def test_critical_difference_bad_tables(study):
    ranks, nemenyi, friedman = stats_tables(study["cases"])
    with pytest.raises(CalfError, match="friedman table: missing column.*cd"):
        build_critical_difference(ranks, nemenyi, friedman.drop(columns="cd"))
    fig = build_critical_difference(ranks, nemenyi, friedman, metric="hd95")
    assert texts(fig) == ["no Friedman test results for metric hd95"]


def test_critical_difference_from_calf_stats(study, tmp_path):
    from calf.stats.run import compute_stats, write_stats

    one = study["cases"].query("dataset == 'sparse'")
    stats = compute_stats(one, study="demo", metrics=("dice",), friedman_metrics=("dice",),
                          resamples=20)
    write_stats(stats, tmp_path / "stats")
    tables = [pd.read_csv(tmp_path / "stats" / f"{name}.csv")
              for name in ("ranks", "nemenyi", "friedman")]
    fig = build_critical_difference(*tables)
    assert len(fig.axes) == 2
    cd = tables[2]["cd"].iloc[0]
    assert all(f"CD = {cd:.2f}" in ax.get_title() for ax in fig.axes)


def _profiles(study) -> list[dict]:
    records = [json.loads(p.read_text()) for p in study["profiles"]]
    bulky = [r for r in records if r["dataset"] == "bulky"]
    bulky[0].update(skewness=12.0, kurtosis=150.0, branch="log10")
    bulky[1].update(skewness=0.3, kurtosis=-0.4, branch="log10")
    bulky[1].pop("histogram")
    return records


def test_imbalance_panels(study):
    records = _profiles(study)
    fig = build_imbalance(records)
    axes = np.array(fig.axes).reshape(2, 2)  # rows bulky, sparse; histogram, S axis
    for (hist, s_axis), dataset in zip(axes, ("bulky", "sparse")):
        assert list(s_axis.get_xticks()) == list(THRESHOLDS) == [-1, -0.5, 0, 0.5, 1]
        assert s_axis.get_xlim() == (-1.75, S_MAX)  # widened to the largest S, capped
        assert hist.get_yscale() == "log"
        shown = [t.get_text() for t in s_axis.texts]
        for record in (r for r in records if r["dataset"] == dataset):
            assert any(t.startswith(f"S = {record['skewness']:.2f}") and record["branch"] in t
                       for t in shown)
    hist, s_axis = axes[0]
    shown = [t.get_text() for t in s_axis.texts]
    assert "S = 12.00, K = 150.00: log10 (off the axis) " in shown
    assert "K<0: log10\nK≥0: bce_dice" in shown
    edge = [line.get_xdata()[0] for line in s_axis.lines if line.get_marker() == ">"]
    assert len(edge) == 1 and S_MAX - 0.1 < edge[0] < S_MAX
    inside = [line.get_xdata()[0] for line in s_axis.lines if line.get_marker() == "o"]
    assert inside == [0.3]
    # fold 1 lost its histogram: fold 0's steps only, and the legend says so
    steps = [p for p in hist.patches if isinstance(p, StepPatch)]
    assert len(steps) == 1
    assert list(steps[0].get_data().values) == records[0]["histogram"]["counts"]
    assert hist.get_legend().get_title().get_text() == "no histogram: fold 1"
    assert len([p for p in axes[1, 0].patches if isinstance(p, StepPatch)]) == 2


def test_imbalance_without_histograms(study):
    records = [json.loads(p.read_text()) for p in study["profiles"]]
    for record in records:
        record.pop("histogram")
    records[0].update(skewness=None, kurtosis=None, branch="bce_dice")
    fig = build_imbalance(records)
    assert any(t.startswith("no histogram in these profiles") for t in texts(fig))
    assert "S undefined (all areas equal): bce_dice" in texts(fig)


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not a readable profile JSON"), ('{"dataset": "x"}', "missing key")],
)
def test_imbalance_bad_profile_names_the_file(tmp_path, content, message):
    path = tmp_path / "fold0.json"
    path.write_text(content)
    with pytest.raises(CalfError, match=message) as info:
        plot_imbalance([path], tmp_path / "out" / "imbalance")
    assert str(path) in str(info.value)
    assert not (tmp_path / "out").exists()


def _run(root: Path, loss: str, fold: int, counts: list[list[int]], scope: str | None) -> Path:
    run = root / "demo" / "sparse" / "unet" / loss / f"fold{fold}"
    run.mkdir(parents=True)
    record = {"status": "complete", "params": {"loss": loss, "loss_kwargs": {}},
              "imbalance": None}
    if scope is not None:
        record["imbalance"] = {"scope": scope}
    (run / "run.json").write_text(json.dumps(record))
    rows = [{"epoch": e + 1, "train_loss": 0.5, "steps": sum(c),
             **{f"branch_{b}": n for b, n in zip(BRANCH_COLOURS, c)}, "val_dice": ""}
            for e, c in enumerate(counts)]
    pd.DataFrame(rows).to_csv(run / "epochs.csv", index=False)
    return run


def test_branch_shares_are_mean_shares_over_folds(tmp_path):
    runs = [
        # fisher logit arcsine log10 ln bce_dice
        _run(tmp_path, "calf", 0, [[1, 0, 0, 3, 0, 0], [0, 0, 0, 0, 0, 2]], "batch"),
        _run(tmp_path, "calf", 1, [[0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]], "batch"),
        _run(tmp_path, "calf_dataset", 0, [[5, 0, 0, 0, 0, 0]] * 2, "dataset"),
        _run(tmp_path, "bce", 0, [[0] * 6] * 2, None),
    ]
    shares = branch_shares(runs, tmp_path)
    assert list(shares["loss"]) == ["calf", "calf"] and list(shares["epoch"]) == [1, 2]
    assert list(shares["runs"]) == [2, 1]  # fold 1 counted no step in epoch 2
    # epoch 1: fold 0 (1/4 fisher, 3/4 log10), fold 1 (1/2 log10, 1/2 bce_dice)
    assert shares.iloc[0][[f"share_{b}" for b in BRANCH_COLOURS]].tolist() == pytest.approx(
        [0.125, 0, 0, 0.625, 0, 0.25])
    assert shares.iloc[1]["share_bce_dice"] == 1 and shares.iloc[1]["share_log10"] == 0
    fig = build_branch_shares(runs, tmp_path)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "U-Net / CALF (share of steps)"
    assert fig.axes[0].get_xlim() == (0.5, 2.5)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(BRANCH_COLOURS)


def test_branch_shares_of_the_study(study):
    fig = build_branch_shares(study["runs"], study["root"] / "runs")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 8  # 2 datasets x 2 models x (CALF, region-specific)
    assert titles[:4] == [
        "U-Net / CALF (share of steps)", "U-Net / Region-specific (share of regions)",
        "FPN / CALF (share of steps)", "FPN / Region-specific (share of regions)"]


def test_branch_shares_without_calf(study, tmp_path):
    baselines = [r for r in study["runs"] if r.parent.name in ("bce", "dice")]
    paths = plot_branch_shares(baselines, tmp_path / "branches")
    check_outputs(paths, tmp_path / "branches")
    assert texts(build_branch_shares(baselines)) == ["no batch-scope CALF runs in this study"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "epochs.csv").unlink(), "epochs.csv: no such file"),
        (lambda run: (run / "run.json").unlink(), "run.json: not found"),
        (lambda run: (run / "run.json").write_text("{"), "run.json: not a readable run record"),
        (lambda run: (run / "epochs.csv").write_text("epoch,branch_fisher\n1,2\n"),
         "epochs.csv: missing column.*branch_logit"),
        (lambda run: (run / "epochs.csv").write_text(
            "epoch," + ",".join(f"branch_{b}" for b in BRANCH_COLOURS) + "\n1,x,0,0,0,0,0\n"),
         "epochs.csv: column branch_fisher, row 2: not a number"),
    ],
)
def test_branch_shares_bad_run_names_the_file(tmp_path, damage, message):
    good = _run(tmp_path, "calf", 0, [[1, 0, 0, 0, 0, 0]], "batch")
    bad = _run(tmp_path, "calf", 1, [[1, 0, 0, 0, 0, 0]], "batch")
    damage(bad)
    with pytest.raises(CalfError, match=message) as info:
        plot_branch_shares([good, bad], tmp_path / "out" / "branches")
    assert str(bad) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_overlay_grids(study, tmp_path):
    files = study["files"]
    grids = collect_overlays(files)
    assert sorted(grids) == ["bulky", "sparse"]
    sparse = [f for f in files if "/sparse/" in f.as_posix()]
    paths = plot_overlays(sparse, tmp_path / "figures", metrics_root=study["root"] / "metrics")
    check_outputs(paths, tmp_path / "figures" / "overlays_sparse")
    fig = build_overlays(grids["sparse"], "sparse")
    axes = np.array(fig.axes).reshape(4, 6)  # losses x (U-Net, FPN) x (best, median, worst)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["BCE", "Dice", "CALF", "Region-specific"]
    assert [t.get_text() for t in axes[0, 0].texts] == ["U-Net: best"]
    assert [t.get_text() for t in axes[0, 5].texts] == ["FPN: worst"]
    assert not axes[1, 1].texts and axes[1, 1].get_ylabel() == ""  # headers: first row only
    record = json.loads((study["root"] / "metrics/demo/sparse/fpn/calf/fold0.json").read_text())
    worst = record["overlays"]["worst"]
    # the fixture's fold-0 cases SPARSE-00000-000 .. -007, worst = the third; one line
    assert worst["case_id"] == "SPARSE-00002-000"
    assert axes[2, 5].get_title() == f"SPARSE-00002-000 · z 3 · Dice {worst['dice']:.2f}"
    # drawn from the .npz (gray image, transposed; the fixture's truth square and shifted
    # prediction as two outlines), not from the PNG
    arrays = np.load(study["root"] / "metrics/demo/sparse/fpn/calf/fold0_overlays/worst.npz")
    (shown,) = axes[2, 5].images
    np.testing.assert_allclose(shown.get_array(), arrays["image"].T / 255)
    assert arrays["truth"].sum() == 100 and arrays["truth"][10:20, 12:22].all()
    colours = [matplotlib.colors.to_hex(c.get_edgecolor()[0]) for c in axes[2, 5].collections]
    assert colours == ["#00e5ff", "#ff3d00"]  # truth cyan, prediction red-orange
    assert not axes[2, 5].get_legend()
    (legend,) = fig.legends  # one legend for the whole figure
    assert [t.get_text() for t in legend.get_texts()] == ["truth", "prediction"]
    assert [matplotlib.colors.to_hex(h.get_color()) for h in legend.legend_handles] == [
        "#00e5ff", "#ff3d00"]
    assert "(fold 0)" in fig.get_suptitle()


def test_overlay_grid_reads_arrays_not_pngs(tmp_path):
    files = write_study(tmp_path, datasets=("sparse",), models=("unet",), losses=("bce", "calf"),
                        folds=2, cases_per_fold=4, seeds=[2, 1], epochs=1)
    for png in (tmp_path / "metrics").rglob("*_overlays/*.png"):
        png.unlink()
    run = tmp_path / "metrics/demo/sparse/unet/calf/seed-1"
    (run / "fold0_overlays/median.npz").unlink()
    fig = build_overlays(collect_overlays(files)["sparse"], "sparse")
    axes = np.array(fig.axes).reshape(2, 3)
    assert "(seed 1, fold 0)" in fig.get_suptitle()
    assert all(len(ax.images) == 1 for ax in np.delete(axes.ravel(), 4))  # no PNG read
    assert [t.get_text() for t in axes[1, 1].texts] == ["missing"] and not axes[1, 1].images
    median = json.loads((run / "fold0.json").read_text())["overlays"]["median"]
    assert axes[1, 1].get_title() == f"SPARSE-00001-000 · z 3 · Dice {median['dice']:.2f}"
    # runs of different variants: each (model, loss) names its own in its best tile
    later = [f for f in files if f != run / "fold0.csv"]  # CALF's first: seed 1, fold 1
    fig = build_overlays(collect_overlays(later)["sparse"], "sparse")
    axes = np.array(fig.axes).reshape(2, 3)
    assert "(first variant of each run)" in fig.get_suptitle()
    assert [t.get_text() for t in axes[1, 0].texts] == ["seed 1, fold 1"]
    assert [t.get_text() for t in axes[0, 0].texts] == ["U-Net: best", "seed 1, fold 0"]
    assert not axes[1, 1].texts and len(axes[1, 1].images) == 1
    # no companion JSON: nothing known of the tiles, each says missing
    (tmp_path / "metrics/demo/sparse/unet/bce/seed-1/fold0.json").unlink()
    fig = build_overlays(collect_overlays(files)["sparse"], "sparse")
    axes = np.array(fig.axes).reshape(2, 3)
    assert [[t.get_text() for t in ax.texts] for ax in axes[0]] == [
        ["U-Net: best", "missing"], ["U-Net: median", "missing"], ["U-Net: worst", "missing"]]
    assert [ax.get_title() for ax in axes[0]] == ["", "", ""]


def test_overlay_grid_bad_arrays_name_the_file(tmp_path):
    files = write_study(tmp_path, datasets=("sparse",), models=("unet",), losses=("bce",),
                        folds=1, cases_per_fold=3, epochs=1)
    bad = tmp_path / "metrics/demo/sparse/unet/bce/fold0_overlays/best.npz"
    np.savez(bad, image=np.zeros((4, 4)), truth=np.zeros((4, 4)))
    with pytest.raises(CalfError, match="no key 'pred'") as info:
        plot_overlays(files, tmp_path / "out")
    assert str(bad) in str(info.value) and not (tmp_path / "out").exists()


def test_overlay_grid_full_size_text_does_not_overlap(tmp_path):
    """9 losses x 3 models x 3 ranks, case IDs long enough to be shortened: every text
    (title, legend, headers, row labels, tile lines) is clear of every other and of the
    other tiles' images, and inside the figure."""
    from calf.naming import LOSS_NAMES, MODEL_NAMES

    files = write_study(tmp_path, datasets=("upenn-gbm-long",), models=tuple(MODEL_NAMES),
                        losses=tuple(LOSS_NAMES), folds=1, cases_per_fold=3, epochs=1)
    fig = build_overlays(collect_overlays(files)["upenn-gbm-long"], "upenn-gbm-long")
    axes = np.array(fig.axes).reshape(9, 9)
    title = axes[0, 0].get_title()
    # "UPENN-GBM-LONG-00000-000" keeps its last 17 characters after the ellipsis
    assert title.startswith("…BM-LONG-00000-000 · z 3 · Dice ") and "\n" not in title
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [fig._suptitle, fig.legends[0]]
    for ax in axes.ravel():
        texts += [t for t in (ax.title, ax.yaxis.label, *ax.texts) if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    inside = fig.bbox
    for k, box in enumerate(boxes):
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, texts[k]
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1, texts[k]
        for other in boxes[k + 1:]:
            assert not box.overlaps(other), (texts[k], other)
    for ax in axes.ravel():
        area = ax.get_window_extent(renderer)
        for text, box in zip(texts, boxes):
            if text not in ax.texts:
                assert not box.overlaps(area), (text, ax.get_title())


@pytest.mark.parametrize("name", ["sparse/unet/fold0.csv", "demo/sparse/unet/calf/fold0.txt"])
def test_overlay_path_outside_the_layout(tmp_path, name):
    path = tmp_path / "metrics" / name
    with pytest.raises(CalfError, match="not a results path") as info:
        plot_overlays([path], tmp_path / "out", metrics_root=tmp_path / "metrics")
    assert str(path) in str(info.value)
    with pytest.raises(CalfError, match="not under"):
        plot_overlays([tmp_path / name], tmp_path / "out", metrics_root=tmp_path / "metrics")
    assert not (tmp_path / "out").exists()


def test_failed_save_leaves_the_old_outputs(tmp_path):
    good = message_figure("old")
    prefix = tmp_path / "figure"
    old = [p.read_bytes() for p in save_figure(good, prefix)]
    bad = message_figure("new")
    bad.text(0.5, 0.2, r"$\notacommand$", parse_math=True)  # fails when drawn
    with pytest.raises(CalfError, match=r"figure\.png: already exists \(pass --force"):
        save_figure(good, prefix)  # files it did not replace are refused without force
    with pytest.raises(ValueError):
        save_figure(bad, prefix, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "figure.svg"]
    assert [p.read_bytes() for p in (tmp_path / "figure.png", tmp_path / "figure.svg")] == old
    with pytest.raises(ValueError):
        save_figure(bad, tmp_path / "new" / "deeper" / "figure")
    assert not (tmp_path / "new").exists()
    (tmp_path / "dir.svg").mkdir()
    with pytest.raises(CalfError, match="dir.svg: is a directory"):
        save_figure(good, tmp_path / "dir")
    assert not (tmp_path / "dir.png").exists()
