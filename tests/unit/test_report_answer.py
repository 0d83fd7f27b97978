"""calf.report.answer: the answer of a study, from hand-built statistics whose answer is known.

``paired.csv``, ``ranks.csv`` and ``stats.json`` are written here by hand following the
``calf stats`` outputs (``calf.stats.run``'s columns), so that each sentence and table cell
can be checked against what was put in; the collapse check runs on real per-case CSVs
(``calf.synth.results.write_study``) through ``calf stats``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import docutils.core
import docutils.utils
import pandas as pd
import pytest

from calf.cli import main
from calf.errors import CalfError
from calf.report.answer import (
    answer_markdown,
    front_page,
    min_attainable_p,
    study_answer,
)
from calf.stats.collect import load_case_metrics
from calf.stats.run import PAIRED_COLUMNS, RANKS_COLUMNS, collapsed_runs
from calf.synth.results import write_study

BASELINES = ("bce", "dice", "iou", "tversky", "focal", "combo")
HEADER = "| dataset | model | best by mean rank (mean Dice) | CALF beats | ties | loses to |"


def _paired_row(dataset, model, baseline, *, significant, favours, n=16, family_size=24,
                metric="dice", modality="all", ratio="natural", calf="calf", p=0.01):
    return {"study": "demo", "dataset": dataset, "model": model, "ratio": ratio,
            "modality": modality, "metric": metric, "calf_loss": calf, "baseline": baseline,
            "n_patients": n, "p_value": p, "p_holm": p if significant else 0.5,
            "significant": significant, "favours": favours, "family_size": family_size,
            "family": f"demo/{dataset}/{model}", "method": "exact"}


def _write_stats(out: Path, paired: list[dict], ranks: list[dict], collapsed=(),
                 calf_losses=("calf",)) -> Path:
    out.mkdir(parents=True)
    pd.DataFrame(paired, columns=list(PAIRED_COLUMNS)).to_csv(out / "paired.csv", index=False)
    pd.DataFrame(ranks, columns=list(RANKS_COLUMNS)).to_csv(out / "ranks.csv", index=False)
    record = {"format": 1, "study": "demo", "settings": {"alpha": 0.05,
                                                         "calf_losses": list(calf_losses)},
              "handling": {}, "notes": []}
    if collapsed is not None:
        record["runs_collapsed"] = list(collapsed)
    (out / "stats.json").write_text(json.dumps(record))
    return out


def _ranks(dataset, model, best: str, best_mean: float, losses=(*BASELINES, "calf")):
    rows = []
    for i, loss in enumerate(x for x in losses if x != best):
        rows.append({"study": "demo", "dataset": dataset, "model": model, "ratio": "natural",
                     "modality": "all", "metric": "dice", "loss": loss, "mean_rank": 3.0 + i,
                     "mean": 0.5, "median": 0.5})
    rows.append({"study": "demo", "dataset": dataset, "model": model, "ratio": "natural",
                 "modality": "all", "metric": "dice", "loss": best, "mean_rank": 2.1,
                 "mean": best_mean, "median": best_mean})
    # HD95 ranks and a per-modality group say otherwise: the answer reads pooled Dice only
    rows.append({**rows[0], "metric": "hd95", "mean_rank": 1.0})
    rows.append({**rows[0], "modality": "flair", "mean_rank": 1.0})
    return rows


def _known_group(dataset="sparse", model="unet", n=16, family_size=24) -> list[dict]:
    """CALF significantly better than BCE, worse than Dice, tied with the rest (on Dice)."""
    rows = [_paired_row(dataset, model, "bce", significant=True, favours="calf", n=n,
                        family_size=family_size),
            _paired_row(dataset, model, "dice", significant=True, favours="dice", n=n,
                        family_size=family_size)]
    rows += [_paired_row(dataset, model, b, significant=False, favours="calf", n=n,
                         family_size=family_size) for b in BASELINES[2:]]
    # other metrics and modalities must not change the Dice answer
    rows += [_paired_row(dataset, model, b, significant=True, favours="calf", metric="hd95",
                         n=n, family_size=family_size) for b in BASELINES]
    rows += [_paired_row(dataset, model, b, significant=True, favours=b, modality="flair",
                         n=n, family_size=family_size) for b in BASELINES]
    return rows


def test_beats_ties_loses_and_best_by_mean_rank(tmp_path):
    stats = _write_stats(tmp_path / "stats", _known_group(),
                         _ranks("sparse", "unet", best="dice", best_mean=0.8124))
    answer = study_answer(stats)
    md = answer_markdown(answer)
    assert HEADER in md
    assert "| sparse | U-Net | Dice (0.812) | BCE | IoU, Tversky, Focal, Combo | Dice |" in md
    assert ("CALF beats 1, ties 4 and loses to 1 of its 6 comparisons with a baseline" in md)
    assert "Best by mean rank on Dice: Dice in 1 of 1." in md
    assert "no test in this group can reach significance" not in md  # 16 patients
    assert "Caveats:" not in md  # nothing collapsed, every test ran


def test_several_calf_losses_and_ratios_get_their_own_columns(tmp_path):
    paired = [_paired_row("pool", "fpn", b, significant=b == "bce", favours=c,
                          ratio=r, calf=c) for r in ("0.1", "natural") for c in
              ("calf", "calf_region") for b in ("bce", "dice")]
    ranks = [{"study": "demo", "dataset": "pool", "model": "fpn", "ratio": r, "modality": "all",
              "metric": "dice", "loss": loss, "mean_rank": rank, "mean": mean, "median": mean}
             for r in ("0.1", "natural") for loss, rank, mean in
             (("bce", 2.0, 0.7), ("dice", 3.0, 0.6), ("calf", 1.5, 0.8),
              ("calf_region", 1.5, 0.75))]
    stats = _write_stats(tmp_path / "stats", paired, ranks, calf_losses=("calf", "calf_region"))
    md = answer_markdown(study_answer(stats))
    assert ("| dataset | model | ratio | best by mean rank (mean Dice) | CALF loss | beats | "
            "ties | loses to |") in md
    # natural first, then the ratios; tied best losses both named, in the canonical order
    rows = [line for line in md.splitlines() if line.startswith("| pool")]
    assert rows == [
        "| pool | FPN | natural | CALF (0.800); Region-specific (0.750) | CALF | BCE | Dice | none |",
        "| pool | FPN | natural | CALF (0.800); Region-specific (0.750) | Region-specific | BCE | Dice | none |",
        "| pool | FPN | 0.1 | CALF (0.800); Region-specific (0.750) | CALF | BCE | Dice | none |",
        "| pool | FPN | 0.1 | CALF (0.800); Region-specific (0.750) | Region-specific | BCE | Dice | none |",
    ]
    assert "over 2 groups (dataset × model × ratio)" in md
    assert "Best by mean rank on Dice: CALF in 2 of 2, Region-specific in 2 of 2." in md


def test_min_attainable_p_is_2_over_2_to_the_n_times_the_family():
    assert min_attainable_p(6, 24) == pytest.approx(2 / 64 * 24) == pytest.approx(0.75)
    assert min_attainable_p(16, 24) == pytest.approx(24 * 2 / 2 ** 16)
    assert min_attainable_p(2, 24) == 1.0  # capped, as Holm caps
    assert min_attainable_p(4, 1) == pytest.approx(0.125)  # one test of 4 pairs: never < 0.05


@pytest.mark.parametrize("n, caveat", [(6, True), (16, False)])
def test_too_few_patients_caveat(tmp_path, n, caveat):
    stats = _write_stats(tmp_path / "stats", _known_group(n=n),
                         _ranks("sparse", "unet", best="calf", best_mean=0.9))
    md = answer_markdown(study_answer(stats))
    text = ("sparse, U-Net: with 6 patients no test in this group can reach significance "
            "(smallest attainable p after Holm 0.75 > alpha 0.05).")
    assert (text in md) is caveat
    assert ("no test in this group can reach significance" in md) is caveat


def test_collapsed_runs_are_named_from_stats_json(tmp_path):
    collapsed = [{"dataset": "sparse", "model": "unet", "loss": "dice", "ratio": "natural",
                  "seed": None, "fold": 0, "collapse": "nothing", "n_cases": 12},
                 {"dataset": "sparse", "model": "unet", "loss": "iou", "ratio": "0.25",
                  "seed": 2, "fold": 1, "collapse": "everything", "n_cases": 12}]
    stats = _write_stats(tmp_path / "stats", _known_group(),
                         _ranks("sparse", "unet", best="calf", best_mean=0.9), collapsed)
    md = answer_markdown(study_answer(stats))
    assert ("- Collapsed run (predicted nothing on every case): sparse, U-Net, Dice, fold 0."
            in md)
    assert ("- Collapsed run (predicted (nearly) everything on every case): sparse, U-Net, "
            "IoU, fold 1 (ratio 0.25, seed 2).") in md
    old = _write_stats(tmp_path / "old", _known_group(),
                       _ranks("sparse", "unet", best="calf", best_mean=0.9), collapsed=None)
    assert "Collapsed runs: not checked" in answer_markdown(study_answer(old))


def test_calf_stats_records_collapsed_runs(tmp_path):
    """A run that predicted nothing (specificity 1, sensitivity 0 on every tumour case) and
    one that predicted everything (specificity 0) are named in stats.json; the others not."""
    paths = write_study(tmp_path, datasets=("sparse",), models=("unet",), folds=2,
                        losses=("bce", "dice", "calf"), cases_per_fold=6, epochs=1)
    root = tmp_path / "metrics"
    nothing = root / "demo/sparse/unet/dice/fold0.csv"
    frame = pd.read_csv(nothing)
    frame = frame.assign(specificity=1.0, sensitivity=frame["sensitivity"].where(
        frame["tumour_voxels"] == 0, 0.0), dice=frame["dice"].where(frame["tumour_voxels"] == 0, 0.0),
        predicted_voxels=0)
    frame.to_csv(nothing, index=False)
    everything = root / "demo/sparse/unet/bce/fold1.csv"
    pd.read_csv(everything).assign(specificity=0.0).to_csv(everything, index=False)
    out = tmp_path / "stats"
    assert main(["stats", "--metrics-root", str(root), "--study", "demo", "--out-dir", str(out),
                 "--resamples", "100", *map(str, paths)]) == 0
    record = json.loads((out / "stats.json").read_text())
    assert record["runs_collapsed"] == [
        {"dataset": "sparse", "model": "unet", "loss": "bce", "ratio": "natural", "seed": None,
         "fold": 1, "collapse": "everything", "n_cases": 6},
        {"dataset": "sparse", "model": "unet", "loss": "dice", "ratio": "natural", "seed": None,
         "fold": 0, "collapse": "nothing", "n_cases": 6}]
    md = answer_markdown(study_answer(out))
    assert "predicted nothing on every case): sparse, U-Net, Dice, fold 0." in md
    assert "predicted (nearly) everything on every case): sparse, U-Net, BCE, fold 1." in md
    # 6 patients per fold, 12 in all, 4 tests per group (2 baselines x 2 metrics): reachable
    assert "no test in this group can reach significance" not in md


def test_collapse_reads_predicted_voxels_where_the_rows_have_them(tmp_path):
    paths = write_study(tmp_path, datasets=("sparse",), models=("unet",), folds=1,
                        losses=("bce", "calf"), cases_per_fold=4, epochs=1)
    cases = load_case_metrics(paths, tmp_path / "metrics")
    assert collapsed_runs(cases) == []
    # the counts decide over the metrics: no predicted voxel anywhere is "nothing" even
    # where a specificity below 1 would say otherwise (and one voxel is not)
    counted = cases.assign(predicted_voxels=0)
    counted.loc[(counted["loss"] == "bce") & (counted.index == counted.index[0]),
                "predicted_voxels"] = 1
    runs = collapsed_runs(counted)
    assert [(r["loss"], r["collapse"]) for r in runs] == [("calf", "nothing")]


def _check_rst(text: str) -> str:
    """The HTML body of ``text``; any docutils warning (level 2) raises."""
    with warnings.catch_warnings():  # docutils 0.22 announces writer= for 2.0
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        parts = docutils.core.publish_parts(
            text, writer_name="html", settings_overrides={"report_level": 1, "halt_level": 2})
    return parts["html_body"]


def test_front_page_renders_without_warnings_and_keeps_the_description(tmp_path):
    group = _known_group(n=6)
    group += [{**row, "dataset": "upenn_gbm"} for row in _known_group(n=6)]
    ranks = _ranks("sparse", "unet", best="dice", best_mean=0.8) + [
        {**r, "dataset": "upenn_gbm"} for r in _ranks("sparse", "unet", best="calf", best_mean=0.7)]
    collapsed = [{"dataset": "upenn_gbm", "model": "unet", "loss": "dice", "ratio": "natural",
                  "seed": None, "fold": 0, "collapse": "nothing", "n_cases": 3}]
    one = study_answer(_write_stats(tmp_path / "a", group, ranks, collapsed))
    two = study_answer(_write_stats(tmp_path / "b", _known_group(),
                                    _ranks("sparse", "unet", best="calf", best_mean=0.9)))
    two.study = "paper_*study*"
    # Snakemake appends its categories' targets to the description
    description = (Path(__file__).parents[2] / "workflow/report/workflow.rst").read_text()
    description += "\n.. _Workflow: #workflow\n.. _Statistics: #statistics\n\nSee Statistics_.\n"
    text = front_page([one, two], description)
    assert text.startswith("==========================\nCALF benchmark: the answer\n")
    assert text.endswith(description)  # unchanged
    assert ".. _" not in text[: -len(description)]  # no explicit targets of our own
    body = _check_rst(text)
    assert "upenn_gbm" in body and "paper_*study*" in body
    assert body.count("<table") == 2
    assert "with 6 patients no test in this group can reach significance" in body
    assert "Collapsed run (predicted nothing on every case): upenn_gbm, U-Net, Dice, fold 0." in body
    with pytest.raises(docutils.utils.SystemMessage):  # the check fails on a warning
        _check_rst("Title\n===\n\n*unclosed\n")


def test_missing_stats_file_is_named(tmp_path):
    stats = _write_stats(tmp_path / "stats", _known_group(),
                         _ranks("sparse", "unet", best="calf", best_mean=0.9))
    (stats / "ranks.csv").unlink()
    with pytest.raises(CalfError, match=r"stats/ranks\.csv: no such file"):
        study_answer(stats)
