"""calf.report.where: "where CALF helps" paragraphs from hand-made calf analyse folders.

``size_classes.csv``, ``interaction.csv``, ``rank_stability.csv`` and ``analysis.json`` are
written here by hand with the columns of the issue-15 spec, so that every sentence can be
checked against what was put in: a planted "better in Q1 only" case, an all-ties case, an
interaction that could not be estimated (NaN), a best loss that stays best in every resample,
each rendered as Markdown and as reStructuredText (escaped, and checked with docutils), and
the README and front-page integration on a tiny report tree.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import docutils.core
import pandas as pd
import pytest

from calf.analysis.robustness import ROBUSTNESS_COLUMNS
from calf.errors import CalfError
from calf.report.answer import StudyAnswer, front_page
from calf.report.readme import (
    ANALYSIS_FIGURE_TITLES,
    FIGURE_TITLES,
    TABLE_FORMATS,
    readme_text,
    write_readme,
)
from calf.report.where import (
    CalfWhere,
    RankStability,
    SizeClass,
    Slope,
    class_place,
    number,
    p_text,
    paragraphs,
    rank_sentence,
    read_where,
    read_wheres,
    slope_sentences,
    where_markdown,
    where_rst,
)
from calf.stats.run import PAIRED_COLUMNS, RANKS_COLUMNS

SIZE_COLUMNS = ("study", "dataset", "model", "ratio", "metric", "size_class", "class_low",
                "class_high", "size_unit", "calf_loss", "baseline", "n_patients", "n_zero_diff",
                "mean_calf", "mean_baseline", "median_diff", "ci_low", "ci_high", "statistic",
                "p_value", "p_holm", "significant", "rank_biserial", "verdict", "family",
                "family_size", "method")
SLOPE_COLUMNS = ("study", "dataset", "model", "ratio", "metric", "calf_loss", "baseline",
                 "n_patients", "size_unit", "method", "slope_per_doubling", "ci_low", "ci_high",
                 "p_value", "primary", "reason", "converged", "normality_p")
RANK_COLUMNS = ("study", "dataset", "model", "ratio", "metric", "n_patients", "resamples",
                "seed", "best", "best_share", "tau_median", "tau_low", "tau_high")
BASELINES = ("bce", "dice", "iou", "tversky", "focal", "combo")
QUARTILES = (("no tumour", 0.0, 0.0), ("Q1", 0.5, 8.2), ("Q2", 8.2, 20.0), ("Q3", 20.0, 45.0),
             ("Q4", 45.0, 150.0))
GROUP = {"study": "demo", "dataset": "sparse", "model": "unet", "ratio": "natural"}


def _class_row(size_class, low, high, baseline, verdict="no difference", median_diff=0.01,
               p_holm=0.4, *, unit="ml", metric="dice", calf="calf", n=12, **group):
    return {**GROUP, **group, "metric": metric, "size_class": size_class, "class_low": low,
            "class_high": high, "size_unit": unit, "calf_loss": calf, "baseline": baseline,
            "n_patients": n, "n_zero_diff": 0, "mean_calf": 0.7, "mean_baseline": 0.6,
            "median_diff": median_diff, "ci_low": median_diff - 0.05,
            "ci_high": median_diff + 0.05, "statistic": 3.0, "p_value": p_holm / 4,
            "p_holm": p_holm, "significant": verdict in ("better", "worse"),
            "rank_biserial": 0.5, "verdict": verdict, "family": "demo/sparse/unet/dice",
            "family_size": 30, "method": "exact"}


def _slope_row(baseline, method, slope, ci, p, primary, reason="", *, metric="dice",
               calf="calf", **group):
    return {**GROUP, **group, "metric": metric, "calf_loss": calf, "baseline": baseline,
            "n_patients": 36, "size_unit": "ml", "method": method, "slope_per_doubling": slope,
            "ci_low": ci[0], "ci_high": ci[1], "p_value": p, "primary": primary,
            "reason": reason, "converged": method == "mixedlm", "normality_p": 0.4}


def _rank_row(best="calf", share=0.62, resamples=2000, tau=0.81, metric="dice", **group):
    return {**GROUP, **group, "metric": metric, "n_patients": 40, "resamples": resamples,
            "seed": 20240611, "best": best, "best_share": share, "tau_median": tau,
            "tau_low": tau - 0.1, "tau_high": min(1.0, tau + 0.1)}


def _robust_row(preset, metric, verdict, baseline="bce", **group):
    return {**GROUP, **group, "preset": preset, "metric": metric, "calf_loss": "calf",
            "baseline": baseline, "n_patients": 40, "median_diff": 0.05, "ci_low": 0.01,
            "ci_high": 0.09, "p_value": 0.01, "p_holm": 0.02, "verdict": verdict,
            "n_refilled": 0, "note": ""}


def _write(folder: Path, sizes, slopes, ranks, notes=(), alpha=0.05, study="demo",
           robust=()) -> Path:
    folder.mkdir(parents=True)
    for name, rows, columns in (("size_classes", sizes, SIZE_COLUMNS),
                                ("interaction", slopes, SLOPE_COLUMNS),
                                ("rank_stability", ranks, RANK_COLUMNS),
                                ("robustness", robust, ROBUSTNESS_COLUMNS)):
        pd.DataFrame(rows, columns=list(columns)).to_csv(folder / f"{name}.csv", index=False)
    record = {"format": 1, "study": study, "settings": {"alpha": alpha, "size_bins": 4},
              "notes": list(notes)}
    (folder / "analysis.json").write_text(json.dumps(record))
    return folder


def _planted_q1(folder: Path, **group) -> Path:
    """Six baselines; CALF beats BCE in Q1 only; its advantage over BCE shrinks with volume.
    Other metrics and CALF-free rows must not change the Dice paragraph."""
    sizes = [_class_row(name, low, high, b, **group) for name, low, high in QUARTILES
             for b in BASELINES if (name, b) != ("Q1", "bce")]
    sizes.insert(7, _class_row("Q1", 0.5, 8.2, "bce", "better", 0.121, 0.003, **group))
    sizes += [_class_row("Q4", 45.0, 150.0, "bce", "worse", -0.2, 0.001, metric="hd95",
                         **group)]
    slopes = [_slope_row("bce", "mixedlm", -0.031, (-0.05, -0.01), 0.002, True, **group),
              _slope_row("bce", "theil-sen", -0.02, (-0.04, 0.0), 0.04, False, **group)]
    slopes += [_slope_row(b, "theil-sen", 0.01, (-0.02, 0.04), p, True, **group)
               for b, p in zip(BASELINES[1:], (0.21, 0.5, 0.33, 0.9, 0.42))]
    ranks = [_rank_row(**group), _rank_row("dice", 0.3, metric="hd95", **group)]
    return _write(folder, sizes, slopes, ranks)


PLANTED = ("**sparse, U-Net (40 patients)**: CALF beats BCE (median difference +0.121, "
           "Holm p = 0.003) and ties the other 5 in Q1 (0.5-8.2 ml); ties all 6 baselines in "
           "the tumour-free patients and in Q2-Q4 (8.2-150 ml). CALF's Dice advantage over BCE "
           "changes by -0.031 per doubling of tumour volume (95% CI -0.050 to -0.010, "
           "p = 0.002, mixed model). CALF's Dice advantage does not change significantly with "
           "tumour volume over the other 5 baselines (p ≥ 0.21). The best loss by mean Dice, "
           "CALF, stays best in 62% of 2,000 bootstrap resamples of the patients (Kendall's "
           "tau median 0.81).")


def test_planted_better_in_q1_only(tmp_path):
    answer = read_where(_planted_q1(tmp_path / "analysis"))
    assert answer.study == "demo" and answer.unit == "ml" and answer.alpha == 0.05
    [group] = answer.groups
    assert [c.name for c in group.calf[0].classes] == ["no tumour", "Q1", "Q2", "Q3", "Q4"]
    md = where_markdown(answer)
    assert PLANTED + "\n" in md
    assert md.startswith("Per dataset, model and filter ratio, on Dice: CALF against each "
                         "baseline within each class of tumour volume (paired Wilcoxon")
    assert "Holm-corrected over the group's classes and baselines, alpha 0.05" in md
    assert "HD95" not in md and "notes" not in md


@pytest.mark.parametrize("verdicts, expected", [
    # 2 presets x 2 metrics, two baselines; only BCE's verdict changes
    ({"bce": ["better"] * 4, "dice": ["no difference"] * 4},
     "Every paired verdict of the group holds under all 4 empty-mask preset and metric "
     "combinations."),
    ({"bce": ["better", "better", "better", "no difference"], "dice": ["worse"] * 4},
     "The verdict depends on the convention or metric for CALF against BCE (3 better and "
     "1 no difference) of the 4 empty-mask preset and metric combinations "
     "(verdict_changes.csv)."),
    ({"bce": ["better", "worse", "worse", "worse"], "dice": ["worse", "worse", "better", "better"],
      "focal": ["better", "no difference", "better", "better"]},
     "The verdicts of 3 of the 3 comparisons depend on the convention or metric over the 4 "
     "empty-mask preset and metric combinations, e.g. CALF against BCE (1 better and 3 worse) "
     "and CALF against Dice (2 better and 2 worse) (verdict_changes.csv)."),
])
def test_robustness_sentence(tmp_path, verdicts, expected):
    combos = [(p, m) for p in ("suite", "nnunet") for m in ("dice", "nsd")]
    robust = [_robust_row(p, m, verdicts[b][i], b) for b in verdicts
              for i, (p, m) in enumerate(combos)]
    folder = _write(tmp_path / "a", [], [], [_rank_row()], robust=robust)
    answer = read_where(folder)
    [(_, paragraph)] = paragraphs(answer)
    assert paragraph.endswith(expected)
    [group] = answer.groups
    assert group.robust.n_combinations == 4 and group.robust.n_comparisons == len(verdicts)


def test_classes_too_small_for_significance_are_said_so(tmp_path):
    """3 patients per class, 30 tests: Holm's smallest p is 30 x 2 / 2^3 = 7.5 > alpha."""
    sizes = [_class_row(name, low, high, b, n=3) for name, low, high in QUARTILES[1:]
             for b in ("bce", "dice")]
    [(_, paragraph)] = paragraphs(read_where(_write(tmp_path / "s", sizes, [], [_rank_row()])))
    assert paragraph.startswith("CALF ties both baselines in every size class (with at most 3 "
                                "patients per class no class test can reach significance "
                                "after Holm's correction).")


def test_all_ties_two_baselines_every_slope_in_full(tmp_path):
    sizes = [_class_row(name, low, high, b) for name, low, high in QUARTILES[:3]
             for b in ("bce", "dice")]
    slopes = [_slope_row("dice", "mixedlm", -0.002, (-0.03, 0.026), 0.9, True),
              _slope_row("bce", "theil-sen", 0.004, (-0.02, 0.028), 0.71, True)]
    folder = _write(tmp_path / "a", sizes, slopes, [_rank_row(share=0.996, tau=0.5)])
    md = where_markdown(read_where(folder))
    assert ("**sparse, U-Net (40 patients)**: CALF ties both baselines in every size class. "
            "CALF's Dice advantage over BCE changes by +0.004 per doubling of tumour volume "
            "(95% CI -0.020 to 0.028, p = 0.71, Theil-Sen); over Dice by -0.002 (95% CI "
            "-0.030 to 0.026, p = 0.9, mixed model). The best loss by mean Dice, CALF, stays "
            "best in over 99% of 2,000 bootstrap resamples of the patients (Kendall's tau "
            "median 0.50).\n") in md


def test_failed_interaction_voxels_and_a_loss(tmp_path):
    """Explicit bins in voxels (an open last class), a class CALF loses, an untested cell,
    an interaction that could not be estimated (NaN, primary or not), a dataset name that
    needs escaping, a ratio, and calf analyse's notes."""
    group = {"dataset": "upenn_gbm", "ratio": "0.25"}
    sizes = [_class_row("B1", 0.0, 1000.0, "bce", unit="voxels", **group),
             _class_row("B1", 0.0, 1000.0, "dice", p_holm=math.nan, unit="voxels", **group),
             _class_row("B2", 1000.0, math.inf, "bce", "worse", -0.05, 0.01, unit="voxels",
                        **group),
             _class_row("B2", 1000.0, math.inf, "dice", unit="voxels", **group)]
    reason = "no slope: too few tumour-bearing patients (3 < 5)."  # interaction.py's words
    # Dice: Theil-Sen primary, as interaction.py writes it; BCE: no primary row at all
    slopes = [_slope_row(b, m, math.nan, (math.nan, math.nan), math.nan,
                         (b, m) == ("dice", "theil-sen"), reason, **group)
              for b in ("bce", "dice") for m in ("mixedlm", "theil-sen")]
    note = "size in voxels: tumour_ml missing for some patients"
    folder = _write(tmp_path / "b", sizes, slopes, [_rank_row(share=math.nan, **group)],
                    notes=[note])
    answer = read_where(folder)
    assert answer.unit == "voxels"
    # the significant class first, then where it ties
    paragraph = ("CALF loses to BCE (median difference -0.050, Holm p = 0.01) and ties Dice in "
                 "B2 (≥ 1,000 voxels); ties BCE and has no test against Dice in B1 (< 1,000 "
                 "voxels). The change of CALF's Dice advantage over BCE with tumour size "
                 "(voxels) could not be estimated: no primary estimate in interaction.csv. The "
                 "change of CALF's Dice advantage over Dice with tumour size (voxels) could not "
                 "be estimated: too few tumour-bearing patients (3 < 5). The best loss by mean "
                 "Dice is CALF (no bootstrap resamples).")
    paragraph = paragraph.replace("<", "\\<")  # escaped in Markdown and in rst alike
    md = where_markdown(answer)
    assert f"**upenn\\_gbm, U-Net, ratio 0.25 (40 patients)**: {paragraph}\n" in md
    assert "- size in voxels: tumour\\_ml missing for some patients" in md
    assert "<details><summary>The notes of calf analyse (1)</summary>" in md
    rst = "\n".join(where_rst(answer))
    assert f"**upenn\\_gbm, U-Net, ratio 0.25 (40 patients)**: {paragraph}\n" in rst
    assert "- size in voxels: tumour\\_ml missing for some patients" in rst
    assert "within each class of tumour size (voxels)" in rst


@pytest.mark.parametrize("share, expected", [
    (1.0, "stays best in all 2,000 bootstrap resamples of the patients (Kendall's tau median "
          "1.00)."),
    (0.62, "stays best in 62% of 2,000 bootstrap resamples"),
    (0.996, "stays best in over 99% of 2,000"),
    (0.004, "stays best in under 1% of 2,000"),
])
def test_rank_sentence_shares(share, expected):
    ranks = RankStability("CALF", share, 2000, 1.0 if share == 1 else 0.8, 40)
    assert expected in rank_sentence(ranks, "Dice")


def test_best_share_of_one_in_a_folder(tmp_path):
    sizes = [_class_row("Q1", 0.5, 8.2, "dice")]
    folder = _write(tmp_path / "c", sizes, [], [_rank_row("dice", 1.0, 1000, 1.0)])
    md = where_markdown(read_where(folder))
    assert ("**sparse, U-Net (40 patients)**: CALF ties Dice in Q1 (0.5-8.2 ml). The best loss "
            "by mean Dice, Dice, stays best in all 1,000 bootstrap resamples of the patients "
            "(Kendall's tau median 1.00).\n") in md


@pytest.mark.parametrize("x, text", [(0.5, "0.5"), (8.2, "8.2"), (150.0, "150"),
                                     (0.01234, "0.0123"), (12345.0, "12,300"), (0.0, "0"),
                                     (1000.0, "1,000")])
def test_number_three_significant_digits(x, text):
    assert number(x) == text


@pytest.mark.parametrize("p, text", [(0.002, "= 0.002"), (0.0004, "< 0.001"),
                                     (0.0499, "= 0.0499"), (0.21, "= 0.21"), (1.0, "= 1")])
def test_p_text(p, text):
    assert p_text(p) == text


def test_class_place_runs_and_open_bounds():
    q2, q4 = SizeClass("Q2", 8.2, 20.0, "ml", 9, []), SizeClass("Q4", 45.0, 150.0, "ml", 9, [])
    assert class_place([q2, q4]) == "in Q2-Q4 (8.2-150 ml)"
    assert class_place([SizeClass("B3", 20.0, math.inf, "ml", 9, [])]) == "in B3 (≥ 20 ml)"
    assert class_place([SizeClass("no tumour", 0, 0, "ml", 9, [])]) == (
        "in the tumour-free patients")


def test_several_groups_and_calf_losses_in_order(tmp_path):
    sizes = [_class_row("Q1", 0.5, 8.2, "bce", calf=c, model=m) for m in ("fpn", "unet")
             for c in ("calf_region", "calf")]
    ranks = [_rank_row(model=m) for m in ("fpn", "unet")]
    answer = read_where(_write(tmp_path / "d", sizes, [], ranks))
    assert [g.model for g in answer.groups] == ["unet", "fpn"]  # the canonical model order
    assert [c.calf_loss for c in answer.groups[0].calf] == ["CALF", "Region-specific"]
    assert "CALF ties BCE in Q1 (0.5-8.2 ml). Region-specific ties BCE in Q1" in (
        where_markdown(answer))


@pytest.mark.parametrize("name", ["size_classes.csv", "interaction.csv",
                                  "rank_stability.csv"])
def test_missing_file_is_named(tmp_path, name):
    folder = _planted_q1(tmp_path / "analysis")
    (folder / name).unlink()
    with pytest.raises(CalfError, match=rf"analysis/{name.replace('.', '[.]')}: no such file"):
        read_where(folder)


def test_missing_column_and_bad_format_are_named(tmp_path):
    folder = _planted_q1(tmp_path / "analysis")
    table = pd.read_csv(folder / "interaction.csv").drop(columns="primary")
    table.to_csv(folder / "interaction.csv", index=False)
    with pytest.raises(CalfError, match=r"interaction\.csv: missing column\(s\) primary"):
        read_where(folder)
    (folder / "analysis.json").write_text(json.dumps({"format": 2, "study": "demo"}))
    with pytest.raises(CalfError, match=r"analysis\.json: format 2, expected 1"):
        read_where(folder)


def _check_rst(text: str) -> str:
    """The HTML body of ``text``; any docutils warning (level 2) raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        parts = docutils.core.publish_parts(
            text, writer_name="html", settings_overrides={"report_level": 1, "halt_level": 2})
    return parts["html_body"]


def _answer(study: str) -> StudyAnswer:
    return StudyAnswer(study, "dice", 0.05, ["CALF"], [], [])


def test_front_page_gets_the_rst_paragraphs(tmp_path):
    where = read_where(_planted_q1(tmp_path / "a", dataset="upenn_gbm"))
    text = front_page([_answer("demo"), _answer("other")], "About.\n", {"demo": where})
    assert text.count("Where CALF helps\n~~~~~~~~~~~~~~~~") == 1  # only the analysed study
    body = _check_rst(text)
    assert "<strong>upenn_gbm, U-Net (40 patients)</strong>: CALF beats BCE" in body
    assert "stays best in 62% of 2,000 bootstrap resamples" in body
    assert front_page([_answer("demo")]) == front_page([_answer("demo")], where={})


def _report_tree(tmp_path: Path, study: str = "demo") -> tuple[Path, Path]:
    """The files readme_text links, as placeholders; the statistics of one tied group."""
    report, stats = tmp_path / "report", tmp_path / "stats" / study
    for fmt in TABLE_FORMATS:
        (report / study).mkdir(parents=True, exist_ok=True)
        (report / study / f"summary.{fmt}").write_text("# Summary\n")
    (report / study / "figures").mkdir()
    for name in [*FIGURE_TITLES, *ANALYSIS_FIGURE_TITLES]:
        for ext in ("png", "svg"):
            (report / study / "figures" / f"{name}.{ext}").write_text("")
    (report / "paper_vs_suite.md").write_text("# Paper vs suite\n")
    (report / "paper_vs_suite.tex").write_text("")
    pd.DataFrame({"status": ["not run"]}).to_csv(report / "paper_vs_suite.csv", index=False)
    stats.mkdir(parents=True)
    keys = {**GROUP, "study": study, "modality": "all", "metric": "dice"}
    paired = [{**keys, "calf_loss": "calf", "baseline": "bce", "n_patients": 40, "p_value": 0.5,
               "p_holm": 0.5, "significant": False, "favours": "calf", "family_size": 2}]
    ranks = [{**keys, "loss": loss, "mean_rank": r, "mean": 0.7, "median": 0.7}
             for loss, r in (("calf", 1.4), ("bce", 1.6))]
    pd.DataFrame(paired, columns=list(PAIRED_COLUMNS)).to_csv(stats / "paired.csv", index=False)
    pd.DataFrame(ranks, columns=list(RANKS_COLUMNS)).to_csv(stats / "ranks.csv", index=False)
    for name in ("friedman.csv", "nemenyi.csv"):
        (stats / name).write_text("")
    (stats / "stats.json").write_text(json.dumps(
        {"format": 1, "study": study, "settings": {"alpha": 0.05, "calf_losses": ["calf"]},
         "handling": {}, "notes": [], "runs_collapsed": []}))
    return report, stats.parent


def test_readme_gets_the_paragraph_under_the_answer(tmp_path):
    report, stats_root = _report_tree(tmp_path)
    analysis = tmp_path / "analysis"
    plain = readme_text(report, stats_root, {"demo": []})
    assert "Where CALF helps" not in plain
    # a root without the study's analysis.json: no paragraph, no error
    assert "Where CALF helps" not in readme_text(report, stats_root, {"demo": []},
                                                 analysis_root=analysis)
    _planted_q1(analysis / "demo")
    text = readme_text(report, stats_root, {"demo": []}, analysis_root=analysis)
    answer, where, summary = (text.index(s) for s in (
        "### Answer", "#### Where CALF helps", "### Summary"))
    assert answer < where < summary
    assert PLANTED in text
    # the analysis figures are linked with the study's analysis, not without it
    for name in ANALYSIS_FIGURE_TITLES:
        assert f"demo/figures/{name}.png" in text and f"figures/{name}.png" not in plain
    (analysis / "demo" / "rank_stability.csv").unlink()
    with pytest.raises(CalfError, match=r"demo/rank_stability\.csv: no such file"):
        readme_text(report, stats_root, {"demo": []}, analysis_root=analysis)


def test_write_readme_writes_both_with_the_analysis(tmp_path):
    report, stats_root = _report_tree(tmp_path)
    analysis = tmp_path / "analysis"
    _planted_q1(analysis / "demo")
    assert list(read_wheres(analysis, ["demo", "absent"])) == ["demo"]
    assert read_wheres(None, ["demo"]) == {}
    description = tmp_path / "workflow.rst"
    description.write_text("About the workflow.\n")
    out, page = tmp_path / "README.md", tmp_path / "front.rst"
    write_readme(report, stats_root, {"demo": []}, out, front_page=page,
                 description=description, analysis_root=analysis)
    assert PLANTED in out.read_text()
    body = _check_rst(page.read_text())
    assert "Where CALF helps" in body and "ties all 6 baselines in the tumour-free" in body


def test_calf_analyse_folder_of_the_planted_fixture(tmp_path):
    """The real tables (calf analyse on calf.synth.planted's small-tumour effect): CALF
    beats both baselines in the smallest quartile only, its advantage shrinks with volume."""
    from calf.analysis.run import compute_analysis, write_analysis
    from calf.synth.planted import planted_cases

    cases = planted_cases(60, losses=("bce", "dice", "calf"), seed=1)
    analysis = compute_analysis(cases, study="planted", resamples=100, rank_resamples=100,
                                presets=("suite",), robustness_metrics=("dice",))
    write_analysis(analysis, tmp_path / "planted")
    answer = read_where(tmp_path / "planted")
    [group] = answer.groups
    verdicts = {c.name: [t.verdict for t in c.tests] for c in group.calf[0].classes}
    assert verdicts == {"no tumour": ["no difference"] * 2, "Q1": ["better"] * 2,
                        "Q2": ["no difference"] * 2, "Q3": ["no difference"] * 2,
                        "Q4": ["no difference"] * 2}
    md = where_markdown(answer)
    assert "**planted, U-Net (60 patients)**: CALF beats BCE (median difference +" in md
    assert "ties both baselines in the tumour-free patients and in Q2-Q4 (" in md
    assert all(s.slope < 0 for s in group.calf[0].slopes)
    assert re.search(r"stays best in (all|\d+% of) 100 bootstrap resamples", md)


def test_failed_slopes_with_one_reason_are_named_together():
    nan = math.nan
    slopes = [Slope(b, "Theil-Sen", nan, nan, nan, nan, "no slope: the tumour sizes do not vary.")
              for b in ("BCE", "Dice", "IoU")]
    text = slope_sentences(CalfWhere("CALF", [], slopes), "Dice", "ml", 0.05, 3)
    assert text == ["The change of CALF's Dice advantage over BCE, Dice and IoU with tumour "
                    "volume could not be estimated: the tumour sizes do not vary."]


def test_slope_without_p_or_ci_says_so_briefly():
    nan = math.nan
    slopes = [Slope("BCE", "Theil-Sen", 0.01, nan, nan, nan)]
    assert slope_sentences(CalfWhere("CALF", [], slopes), "Dice", "ml", 0.05, 3) == [
        "CALF's Dice advantage over BCE changes by +0.010 per doubling of tumour volume "
        "(Theil-Sen)."]
    many = [Slope(b, "Theil-Sen", 0.01, nan, nan, nan) for b in ("BCE", "Dice", "IoU")]
    assert slope_sentences(CalfWhere("CALF", [], many), "Dice", "ml", 0.05, 3) == [
        "CALF's Dice advantage does not change significantly with tumour volume over any of "
        "the 3 baselines."]
