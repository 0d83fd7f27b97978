"""calf.report.tables: the summary table and the paper-vs-suite table, from a real results tree.

The per-case CSVs come from ``calf.synth.results.write_study`` and are read by
``calf.stats.collect.load_case_metrics``; expected statistics are computed here with numpy
from the CSV files themselves; the paired statistics are written by hand following the
``paired.csv`` columns, so that markers can be asked for exactly where wanted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calf import _fs
from calf.errors import CalfError
from calf.report import reference
from calf.report.tables import summary as tables_summary
from calf.report.tables import write_paper_table, write_summary_tables
from calf.stats.collect import load_case_metrics
from calf.synth.results import write_study

CALF_LOSSES = ["calf", "calf_region"]
SUFFIXES = (".csv", ".md", ".tex", ".html")
SIX = ("dice", "iou", "hd95", "sensitivity", "specificity", "precision")  # the fixture's metrics
N_CASES = 12  # cases of the study's one fold
UNET, FPN = "sparse, U-Net, natural ratio", "sparse, FPN, natural ratio"  # block titles


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """One dataset, two models, all eight losses, one fold, two seeds: the metrics root."""
    results = tmp_path_factory.mktemp("results")
    write_study(results, datasets=("sparse",), models=("unet", "fpn"), folds=1,
                cases_per_fold=N_CASES, seeds=(1, 2), effects={"calf": 0.2}, epochs=1)
    return results / "metrics"


@pytest.fixture(scope="module")
def cases(study) -> pd.DataFrame:
    """The study's per-case metrics as ``load_case_metrics`` reads them (shared, read-only)."""
    return load_case_metrics(_csvs(study), study)


def _copy(metrics: Path, tmp_path: Path) -> Path:
    """A private copy of the metrics tree (tests that edit CSVs)."""
    return Path(shutil.copytree(metrics, tmp_path / "metrics"))


def _csvs(root: Path) -> list[Path]:
    return sorted(root.rglob("fold*.csv"))


def _edit(root: Path, model: str, loss: str, column: str, value, rows=slice(None),
          seed: int | None = None) -> None:
    """Set ``column`` of some rows in the per-case CSVs of one model and loss."""
    for path in _csvs(root / "demo" / "sparse" / model / loss):
        if seed is not None and f"seed-{seed}" not in path.parts:
            continue
        frame = pd.read_csv(path, dtype={"case_id": str})
        frame.loc[frame.index[rows], column] = value
        frame.to_csv(path, index=False)


def _load(root: Path) -> pd.DataFrame:
    return load_case_metrics(_csvs(root), root)


def _write(cases: pd.DataFrame, out: Path, paired=None, alpha: float = 0.05,
           metrics=None, force: bool = False) -> dict[str, Path]:
    paths = write_summary_tables(cases, paired, out / "summary", calf_losses=CALF_LOSSES,
                                 alpha=alpha, metrics=metrics, force=force)
    assert [p.suffix for p in paths] == list(SUFFIXES)
    return {p.suffix: p for p in paths}


def _md_blocks(text: str) -> dict[str, dict]:
    """Markdown blocks by title start (e.g. 'sparse, U-Net'): rows by loss, legend text."""
    blocks = {}
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        split = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
        header, rows = split[0], split[2:]
        legend = "\n".join(line for line in body.splitlines() if line and not line.startswith("|"))
        blocks[title.split(" (")[0]] = {
            "header": header, "rows": {r[0]: dict(zip(header, r, strict=True)) for r in rows},
            "legend": legend}
    return blocks


def _expected(root: Path, model: str, loss: str, metric: str) -> np.ndarray:
    """Per-patient means over seeds of one metric, straight from the CSV files (the
    fixture's patients have one case and one modality each): NaN seeds left out, NaN where
    both are."""
    values: dict[str, list[float]] = {}
    for path in _csvs(root / "demo" / "sparse" / model / loss):
        frame = pd.read_csv(path, dtype={"case_id": str, "patient_id": str})
        assert frame["patient_id"].is_unique and (frame["modality"] == "flair").all()
        for patient, value in zip(frame["patient_id"], frame[metric], strict=True):
            values.setdefault(patient, []).append(float(value))
    assert all(len(v) == 2 for v in values.values())  # two seeds each
    finite = [[x for x in v if not np.isnan(x)] for v in values.values()]
    return np.array([np.mean(v) if v else np.nan for v in finite])


@pytest.mark.parametrize("model, loss, metric", [
    ("unet", "bce", "precision"), ("fpn", "calf", "hd95"), ("unet", "calf_region", "dice"),
])
def test_cell_statistics_match_numpy(study, tmp_path, model, loss, metric):
    root = _copy(study, tmp_path)
    _edit(root, model, loss, metric, np.nan, rows=slice(0, 2), seed=1)  # empty cells
    out = _write(_load(root), tmp_path / "out", metrics=SIX)
    table = pd.read_csv(out[".csv"], dtype={"ratio": str})
    row = table[(table["model"] == model) & (table["loss"] == loss) & (table["metric"] == metric)]
    assert len(row) == 1
    row = row.iloc[0]
    per_patient = _expected(root, model, loss, metric)
    values = per_patient[~np.isnan(per_patient)]
    assert row["n"] == len(values)  # patients; a NaN seed leaves a patient its other seed
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    assert row["mean"] == pytest.approx(np.mean(values))
    assert row["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (row["median"], row["q1"], row["q3"]) == pytest.approx((median, q1, q3))
    assert row["ratio"] == "natural" and row["study"] == "demo" and row["dataset"] == "sparse"

    d = 2 if metric == "hd95" else 3
    block = _md_blocks(out[".md"].read_text())[UNET if model == "unet" else FPN]
    name = {"bce": "BCE", "calf": "CALF", "calf_region": "Region-specific"}[loss]
    head = {"precision": "Precision", "hd95": "HD95", "dice": "Dice"}[metric]
    cells = block["rows"][name]
    shown = (cells[f"{head} mean ± sd"].strip("*"), cells[f"{head} median [q1, q3]"].strip("*"))
    assert shown == (f"{np.mean(values):.{d}f} ± {np.std(values, ddof=1):.{d}f}",
                     f"{median:.{d}f} [{q1:.{d}f}, {q3:.{d}f}]")


def test_best_is_bold_with_ties_min_for_hd95_and_none_for_empty(study, tmp_path):
    root = _copy(study, tmp_path)
    for loss in ("bce", "combo"):  # a tie at the top of Dice
        _edit(root, "unet", loss, "dice", 0.99)
    _edit(root, "unet", "focal", "hd95", 0.5)  # far below every other HD95
    _edit(root, "unet", "dice", "sensitivity", np.nan)  # no value at all: n = 0
    out = _write(_load(root), tmp_path / "out", metrics=SIX)

    table = pd.read_csv(out[".csv"])
    unet = table[table["model"] == "unet"]
    for metric, winners in (("dice", {"bce", "combo"}), ("hd95", {"focal"})):
        rows = unet[unet["metric"] == metric]
        assert set(rows.loc[rows["best"], "loss"]) == winners
        assert set(rows.loc[rows["best_median"], "loss"]) == winners
    empty = unet[(unet["loss"] == "dice") & (unet["metric"] == "sensitivity")].iloc[0]
    assert empty["n"] == 0 and not empty["best"] and np.isnan(empty["mean"])

    rows = _md_blocks(out[".md"].read_text())[UNET]["rows"]
    for head, winners in (("Dice", {"BCE", "Combo"}), ("HD95", {"Focal"})):
        for column in (f"{head} mean ± sd", f"{head} median [q1, q3]"):
            bold = {loss for loss, cells in rows.items() if cells[column].startswith("**")}
            assert bold == winners, column
    assert rows["BCE"]["Dice mean ± sd"] == "**0.990 ± 0.000**"
    empty = rows["Dice"]
    assert empty["Sensitivity mean ± sd"] == "–" == empty["Sensitivity median [q1, q3]"]

    n_bold = int(table["best"].sum() + table["best_median"].sum())
    assert out[".md"].read_text().count("**") == 2 * n_bold
    assert out[".tex"].read_text().count(r"\textbf{") == n_bold
    assert out[".html"].read_text().count("<b>") == n_bold


def _paired(rows: dict[tuple[str, str, str, str], bool], models=("unet", "fpn"),
            metrics=("dice", "hd95")) -> pd.DataFrame:
    """A paired frame with calf stats' columns: every CALF loss x baseline x metric of each model;
    ``significant`` (and a p_holm that agrees) True where ``rows`` says so."""
    records = []
    for model in models:
        for metric in metrics:
            for calf in reversed(CALF_LOSSES):  # order in the file must not matter
                for baseline in ("bce", "dice", "iou", "tversky", "focal", "combo"):
                    hit = rows.get((model, metric, calf, baseline), False)
                    records.append({
                        "study": "demo", "dataset": "sparse", "model": model, "ratio": "natural",
                        "modality": "all", "metric": metric, "calf_loss": calf,
                        "baseline": baseline, "n_patients": N_CASES,
                        "p_value": 0.001 if hit else 0.4,
                        "p_holm": 0.01 if hit else 0.8, "significant": hit, "family": "group",
                        "method": "exact"})
    return pd.DataFrame(records)


SIGNIFICANT = {("unet", "dice", "calf", "bce"): True, ("unet", "dice", "calf_region", "bce"): True,
               ("unet", "hd95", "calf_region", "focal"): True, ("fpn", "dice", "calf", "iou"): True}


def test_markers_exactly_where_paired_says_significant(cases, tmp_path):
    out = _write(cases, tmp_path / "out", _paired(SIGNIFICANT))
    table = pd.read_csv(out[".csv"], keep_default_na=False)
    expected = {("unet", "bce", "dice"): "calf;calf_region",
                ("unet", "focal", "hd95"): "calf_region", ("fpn", "iou", "dice"): "calf"}
    got = {(r.model, r.loss, r.metric): r.significant_vs
           for r in table.itertuples() if r.significant_vs}
    assert got == expected

    blocks = _md_blocks(out[".md"].read_text())
    names = {"bce": "BCE", "focal": "Focal", "iou": "IoU"}
    heads = {"dice": "Dice", "hd95": "HD95"}
    marks = {"calf;calf_region": "†‡", "calf_region": "‡", "calf": "†"}
    seen = set()
    for title, model in ((UNET, "unet"), (FPN, "fpn")):
        for loss, cells in blocks[title]["rows"].items():
            for column, text in cells.items():
                found = re.search(r"[†‡]+$", text)
                if found:
                    seen.add((model, loss, column, found.group(0)))
    want = {(m, names[loss], f"{heads[metric]} {stat}", marks[v])
            for (m, loss, metric), v in expected.items()
            for stat in ("mean ± sd", "median [q1, q3]")}
    assert seen == want
    tex, html_text = out[".tex"].read_text(), out[".html"].read_text()
    assert tex.count(r"\textsuperscript{\dag{}\ddag{}}") == 2
    assert tex.count(r"\textsuperscript{") == 6
    assert html_text.count("<sup>†‡</sup>") == 2 and html_text.count("<sup>") == 6


@pytest.mark.slow
def test_markers_from_the_real_paired_statistics(cases, tmp_path):
    from calf.stats.run import compute_stats, write_stats

    stats = compute_stats(cases, study="demo", calf_losses=CALF_LOSSES, resamples=200)
    write_stats(stats, tmp_path / "stats")
    paired = pd.read_csv(tmp_path / "stats" / "paired.csv", dtype={"ratio": str})
    assert paired["significant"].any() and not paired["significant"].all()
    out = _write(cases, tmp_path / "out", paired)
    table = pd.read_csv(out[".csv"], keep_default_na=False)
    got = {(r.model, r.loss, r.metric): r.significant_vs for r in table.itertuples()}
    for (model, baseline, metric), rows in paired.groupby(["model", "baseline", "metric"]):
        hits = [c for c in CALF_LOSSES if c in set(rows.loc[rows["significant"], "calf_loss"])]
        assert got.pop((model, baseline, metric)) == ";".join(hits)
    assert set(got.values()) == {""}  # untested cells: CALF rows, other metrics
    n_marked = int((paired["significant"]).groupby(
        [paired["model"], paired["baseline"], paired["metric"]]).any().sum())
    assert out[".html"].read_text().count("<sup>") == 2 * n_marked
    legend = _md_blocks(out[".md"].read_text())[FPN]["legend"]
    size = int(paired.loc[paired["model"] == "fpn", "family_size"].iloc[0])
    family = paired.loc[paired["model"] == "fpn", "family"].iloc[0]
    assert f"Holm-corrected over the {size} tests of family {family}, α = 0.05" in legend


@pytest.mark.parametrize("alpha", [0.05, 0.02])
def test_legend_states_markers_test_correction_alpha_and_tested_metrics(cases, tmp_path, alpha):
    paired = _paired(SIGNIFICANT, models=("unet",), metrics=("hd95", "dice"))
    out = _write(cases, tmp_path / "out", paired, alpha=alpha)
    blocks = _md_blocks(out[".md"].read_text())
    legend = blocks[UNET]["legend"]
    assert "† CALF, ‡ Region-specific: on a baseline's row" in legend
    assert "paired Wilcoxon signed-rank test" in legend
    assert "Holm-corrected over every test of this dataset, model and ratio" in legend
    assert f"α = {alpha:g})" in legend
    assert "Tested metrics: Dice, HD95 only" in legend
    assert "lowest for HD95" in legend
    # the FPN block has no test in the paired frame: no markers, and the legend says so
    assert "hold no test for this dataset, model and ratio" in blocks[FPN]["legend"]
    assert not any(re.search("[†‡]", c) for r in blocks[FPN]["rows"].values()
                   for c in r.values())
    assert r"$\alpha$ = " + f"{alpha:g}" in out[".tex"].read_text()


def test_without_paired_statistics_no_markers(cases, tmp_path):
    out = _write(cases, tmp_path / "out", None)
    text = out[".md"].read_text()
    assert text.count("No significance markers: no paired statistics were given.") == 2
    assert "†" not in text and "‡" not in text
    table = pd.read_csv(out[".csv"], keep_default_na=False)
    assert (table["significant_vs"] == "").all()
    assert len(table) == 2 * 8 * 6  # models x losses x metrics


@pytest.mark.parametrize("change, message", [
    (lambda p: p.drop(columns="significant"), "missing column(s) significant"),
    (lambda p: p.assign(calf_loss=p["calf_loss"].replace("calf", "focal")),
     "calf_loss 'focal'"),
    (lambda p: p.assign(baseline=p["baseline"].replace("iou", "ghost")), "loss 'ghost' of demo/"),
    (lambda p: p.assign(metric=p["metric"].replace("hd95", "mae")), "unknown metric 'mae'"),
    (lambda p: p.assign(p_holm=0.2, significant=True), "significant=True but p_holm=0.2"),
    (lambda p: pd.concat([p, p.iloc[:1]]), "appears twice"),
    (lambda p: p.assign(significant=np.nan), "column significant holds 'nan'"),
    (lambda p: p.assign(ratio="0.1"), "ratio 0.1"),
])
def test_paired_frame_that_does_not_fit_is_refused(cases, tmp_path, change, message):
    paired = change(_paired(SIGNIFICANT))
    with pytest.raises(CalfError, match=re.escape(message)):
        _write(cases, tmp_path / "out", paired)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_several_studies_are_refused(cases, tmp_path):
    other = cases.assign(study="other")
    with pytest.raises(CalfError, match=r"several studies \(demo, other\)"):
        write_summary_tables(pd.concat([cases, other]), None, tmp_path / "s",
                             calf_losses=CALF_LOSSES, alpha=0.05)


class _Tags(HTMLParser):
    """Checks that every opened HTML element (but void ones) is closed in order."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def _check_latex(tex: str) -> None:
    """Balanced braces and environments; no unescaped _, &, %, # outside their roles."""
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    depth = 0
    for match in re.finditer(r"\\\\|\\[{}]|[{}]", body):
        token = match.group(0)
        if token in ("{", "}"):
            depth += 1 if token == "{" else -1
            assert depth >= 0
    assert depth == 0
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", body):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack
    assert not re.search(r"(?<!\\)[_#]", body)
    assert not re.search(r"(?<!\\)%", body.replace("{%\n", "{\n"))  # only \resizebox's '%'
    # every tabular row has as many cells as its column spec
    for spec, rows in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, re.S):
        for line in rows.splitlines():
            if line.endswith(r"\\") and r"\multicolumn" not in line:
                assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line


def test_formats_escape_names_and_are_well_formed(tmp_path):
    results = tmp_path / "results"
    paths = write_study(results, study="demo_1", datasets=("sp_arse",), models=("unet",),
                        losses=("bce", "my_loss", "calf"), folds=1, cases_per_fold=4, epochs=1)
    cases = load_case_metrics(paths, results / "metrics")
    paired = pd.DataFrame([{"study": "demo_1", "dataset": "sp_arse", "model": "unet",
                            "ratio": "natural", "modality": "all", "metric": "dice",
                            "calf_loss": "calf", "baseline": "my_loss", "significant": True}])
    out = {p.suffix: p for p in write_summary_tables(cases, paired, tmp_path / "t" / "summary",
                                                     calf_losses=["calf"], alpha=0.05)}
    tex = out[".tex"].read_text()
    _check_latex(tex)
    assert r"my\_loss & " in tex and r"sp\_arse" in tex and r"demo\_1" in tex
    assert tex.count(r"\textsuperscript{\dag{}}") == 2
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    md = out[".md"].read_text()
    assert r"| my\_loss |" in md and "my_loss" not in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in rows}) == 1  # 14 pipes each
    parser = _Tags()
    parser.feed(out[".html"].read_text())
    assert parser.stack == []
    assert "<td class=\"text\">my_loss</td>" in out[".html"].read_text()


def _runs_from_companions(metrics: Path) -> pd.DataFrame:
    """What the lead collects: one row per holdout run, from the companion JSONs."""
    rows = []
    for path in sorted(metrics.rglob("fold0.json")):
        record = json.loads(path.read_text())
        rows.append({"study": path.relative_to(metrics).parts[0], "model": record["model"],
                     "loss": record["loss"], "ratio": record["ratio"] or "natural",
                     "seed": record["seed"],
                     "batch_pooled_dice": record["summary"]["batch_pooled_dice_32"]})
    return pd.DataFrame(rows)


def test_paper_table_matches_runs_to_published_cells(tmp_path):
    results = tmp_path / "results"
    write_study(results, study="pooled", datasets=("pool",), models=("unet",),
                losses=("calf", "combo"), folds=1, cases_per_fold=3, seeds=(1, 2), epochs=1)
    runs = _runs_from_companions(results / "metrics")
    calf_values = runs.loc[runs["loss"] == "calf", "batch_pooled_dice"].to_numpy()
    assert len(calf_values) == 2
    extra = pd.DataFrame([
        {"study": "filt", "model": "fpn", "loss": "bce", "ratio": "0.1", "seed": 1,
         "batch_pooled_dice": 0.80},
        {"study": "filt_b", "model": "fpn", "loss": "bce", "ratio": 0.1, "seed": 1,
         "batch_pooled_dice": 0.83},
        {"study": "filt", "model": "fpn", "loss": "calf", "ratio": "0.25", "seed": 1,
         "batch_pooled_dice": None},
        {"study": "filt", "model": "fpn", "loss": "combo", "ratio": "0.25", "seed": 1,
         "batch_pooled_dice": 0.7},  # no published value: not listed
        {"study": "filt", "model": "fpn", "loss": "bce", "ratio": "natural", "seed": 1,
         "batch_pooled_dice": 0.9},
    ])
    paths = write_paper_table(pd.concat([runs, extra], ignore_index=True), tmp_path / "paper")
    out = {p.suffix: p for p in paths}
    assert list(out) == list(SUFFIXES)
    table = pd.read_csv(out[".csv"], dtype={"ratio": str, "study": str}, keep_default_na=False,
                        na_values={"suite": [""], "difference": [""]})
    assert len(table) == 24 + 9 + 1  # the published cells, one of them run by two studies

    def row(tab, model, loss, ratio, study=None):
        hit = table[(table["table"] == tab) & (table["model"] == model) & (table["loss"] == loss)
                    & (table["ratio"] == ratio)]
        return hit if study is None else hit[hit["study"] == study]

    calf = row("main", "unet", "calf", "natural").iloc[0]
    assert (calf["study"], calf["status"], calf["n_seeds"]) == ("pooled", "run", 2)
    assert calf["paper"] == 0.9577
    assert calf["suite"] == pytest.approx(calf_values.mean())
    assert calf["difference"] == pytest.approx(calf_values.mean() - 0.9577)
    bce = row("main", "unet", "bce", "natural").iloc[0]
    assert (bce["status"], bce["study"], bce["n_seeds"]) == ("not run", "", 0)
    assert np.isnan(bce["suite"]) and np.isnan(bce["difference"])
    assert row("main", "fpn", "bce", "natural").iloc[0]["suite"] == pytest.approx(0.9)

    filtered = row("filtering", "fpn", "bce", "0.1")
    assert list(filtered["study"]) == ["filt", "filt_b"]
    assert filtered["suite"].tolist() == pytest.approx([0.80, 0.83])
    assert filtered["difference"].tolist() == pytest.approx([0.80 - 0.8187, 0.83 - 0.8187])
    assert row("filtering", "fpn", "calf", "0.25").iloc[0]["status"] == "no value"
    assert row("filtering", "fpn", "combo", "0.25").empty
    assert set(table["status"]) == {"run", "not run", "no value"}

    md = out[".md"].read_text()
    shown = f"{calf_values.mean():.4f} | {calf_values.mean() - 0.9577:+.4f}".replace("-", "−")
    assert f"| U-Net | CALF | pooled | 2 | 0.9577 | {shown} |" in md
    assert "| U-Net | BCE | – | 0 | 0.9589 | not run | – |" in md
    assert "| 0.1 | BCE | filt\\_b | 1 | 0.8187 | 0.8300 | +0.0113 |" in md
    for text in (md, out[".html"].read_text(), out[".tex"].read_text()):
        assert "arXiv:2504.04458" in text and "57,090" in text
        assert "each batch of 32 test slices" in text and "90/10" in text
        assert "one seeded random permutation of the test slices, seed 0" in text
        assert "DistributedSampler(shuffle=True)" in text and "consecutive" not in text
    _check_latex(out[".tex"].read_text())


@pytest.mark.parametrize("runs", [pd.DataFrame(), pd.DataFrame(columns=["study", "model", "loss",
                                                                         "ratio", "seed",
                                                                         "batch_pooled_dice"])])
def test_paper_table_without_runs_says_not_run_everywhere(tmp_path, runs):
    out = {p.suffix: p for p in write_paper_table(runs, tmp_path / "paper")}
    table = pd.read_csv(out[".csv"])
    assert len(table) == len(reference.PAPER_VALUES) == 33
    assert (table["status"] == "not run").all() and table["suite"].isna().all()
    # the other formats: one line saying so and how to run it, not 33 rows of "not run"
    md = out[".md"].read_text()
    assert md.splitlines() == ["# Paper vs suite: batch-pooled Dice", "", md.splitlines()[2]]
    line = md.splitlines()[2]
    assert line.startswith("No study ran the authors' pooled protocol, so none of the "
                           "paper's 33 published values has a suite counterpart yet")
    assert "`snakemake --configfile config/paper.yaml`" in line and "`holdout`" in line
    tex, page = out[".tex"].read_text(), out[".html"].read_text()
    assert r"\texttt{snakemake --configfile config/paper.yaml}" in tex and "tabular" not in tex
    assert "<code>snakemake --configfile config/paper.yaml</code>" in page
    assert "<table" not in page and "not run" not in md + tex + page


@pytest.mark.parametrize("change, message", [
    (lambda r: r.drop(columns="seed"), "missing column(s) seed"),
    (lambda r: r.assign(ratio="abc"), "ratio 'abc'"),
    (lambda r: r.assign(batch_pooled_dice="x"), "batch_pooled_dice 'x'"),
    (lambda r: pd.concat([r, r]), "pooled/unet/calf ratio natural seed 1 is listed twice"),
])
def test_paper_table_refuses_bad_runs(tmp_path, change, message):
    runs = pd.DataFrame([{"study": "pooled", "model": "unet", "loss": "calf", "ratio": "natural",
                          "seed": 1, "batch_pooled_dice": 0.9}])
    with pytest.raises(CalfError, match=re.escape(message)):
        write_paper_table(change(runs), tmp_path / "paper")
    assert list(tmp_path.iterdir()) == []


def test_reference_holds_spec_section_7():
    main = {(v.model, v.loss): v.dice for v in reference.MAIN_TABLE}
    assert len(main) == 24
    assert (main[("unet", "calf")], main[("deeplabv3", "iou")], main[("fpn", "calf_region")]) == (
        0.9577, 0.0754, 0.8962)
    filtering = {(v.ratio, v.loss): v.dice for v in reference.FILTERING_TABLE}
    assert filtering == {(0.10, "bce"): 0.8187, (0.10, "combo"): 0.8265, (0.10, "calf"): 0.8267,
                         (0.25, "bce"): 0.8849, (0.25, "calf"): 0.8804, (0.60, "bce"): 0.9057,
                         (0.60, "calf"): 0.9041, (0.85, "bce"): 0.8942, (0.85, "calf"): 0.8919}
    assert {v.model for v in reference.FILTERING_TABLE} == {"fpn"}
    assert "arXiv:2504.04458" in reference.SOURCE and reference.TEST_SLICES == 57_090


def test_failure_while_rendering_leaves_nothing(cases, tmp_path, monkeypatch):
    def broken(doc):
        raise RuntimeError("injected")

    monkeypatch.setattr(tables_summary, "to_html", broken)
    with pytest.raises(RuntimeError, match="injected"):
        _write(cases, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # rendering comes before any writing


def test_failure_while_renaming_restores_previous_outputs(cases, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for suffix in SUFFIXES:
        (out / f"summary{suffix}").write_text(f"old {suffix}")
    real_replace = os.replace

    def failing(src, dst):  # the rename of the new .tex over the old one fails
        if str(dst).endswith("summary.tex") and Path(src).name.endswith(".tmp"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(_fs.os, "replace", failing)
    with pytest.raises(CalfError, match=r"summary\.tex: cannot write there \(No space left"):
        _write(cases, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [f"summary{s}" for s in sorted(SUFFIXES)]
    for suffix in SUFFIXES:
        assert (out / f"summary{suffix}").read_text() == f"old {suffix}"


def test_unwritable_destinations_are_refused_before_writing(cases, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.html").mkdir()  # a folder where a file must go
    with pytest.raises(CalfError, match=r"summary\.html: is a folder"):
        _write(cases, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["summary.html"]
    (tmp_path / "file").write_text("x")  # a file where a folder must go
    with pytest.raises(CalfError, match="cannot write there"):
        write_paper_table(pd.DataFrame(), tmp_path / "file" / "paper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


def test_metrics_are_selectable_and_scoring_is_noted(cases, tmp_path):
    # the fixture's CSVs are of the six-metric format: NSD and the lesion metrics are NaN,
    # so by default the tables show Dice and HD95; the CSV keeps all six with values
    out = _write(cases, tmp_path / "all")
    assert list(dict.fromkeys(pd.read_csv(out[".csv"])["metric"])) == list(SIX)
    block = next(iter(_md_blocks(out[".md"].read_text()).values()))
    assert block["header"][1:] == [f"{m} {h}" for m in ("Dice", "HD95")
                                   for h in ("mean ± sd", "median [q1, q3]")]
    assert "Sensitivity" not in out[".html"].read_text() + out[".tex"].read_text()
    # with NSD values, NSD is shown third (and kept in the CSV in the metrics' order)
    out = _write(cases.assign(nsd=0.5), tmp_path / "nsd")
    assert list(dict.fromkeys(pd.read_csv(out[".csv"])["metric"])) == [
        "dice", "iou", "hd95", "nsd", "sensitivity", "specificity", "precision"]
    block = next(iter(_md_blocks(out[".md"].read_text()).values()))
    assert [h.split()[0] for h in block["header"][1:]] == ["Dice"] * 2 + ["HD95"] * 2 + ["NSD"] * 2
    sources = sorted(set(cases["source"]))
    protocols = {s: {"space": "native", "preset": "brats", "metrics": {"nsd_tolerance_mm": 1.0}}
                 for s in sources}
    protocols[sources[0]] = {}  # one file of an older format
    paths = write_summary_tables(cases, None, tmp_path / "some" / "summary",
                                 calf_losses=CALF_LOSSES, alpha=0.05, protocols=protocols,
                                 metrics=["hd95", "dice"])
    out = {p.suffix: p for p in paths}
    assert list(dict.fromkeys(pd.read_csv(out[".csv"])["metric"])) == list(SIX)
    blocks = _md_blocks(out[".md"].read_text())
    block = next(iter(blocks.values()))
    assert block["header"][1:] == [f"{m} {h}" for m in ("HD95", "Dice")
                                   for h in ("mean ± sd", "median [q1, q3]")]
    assert ("Scored on each case's original grid (native space); HD95 in mm, NSD at 1 mm; "
            "conventions preset brats for undefined values.") in block["legend"]
    assert any("older format" in b["legend"] for b in blocks.values())
    with pytest.raises(CalfError, match="--metric 'mae'"):
        write_summary_tables(cases, None, tmp_path / "x" / "summary", calf_losses=CALF_LOSSES,
                             alpha=0.05, metrics=["mae"])
