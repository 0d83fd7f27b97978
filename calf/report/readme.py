"""``results/report/README.md``: each study's answer first, then its tables, figures and tests.

The README is the plain-file twin of Snakemake's HTML report. Per study: its answer
(``calf.report.answer``: whom each CALF loss beats, ties and loses to on Dice, the best loss
by mean rank, the caveats) and, where ``calf analyse`` ran for it (``analysis_root``), where
CALF helps (``calf.report.where``: by tumour size class, the change with tumour volume, the
stability of the top rank), the summary table inline, the figures, then a digest of the
paired tests (how often each CALF loss beat, lost to or tied with a baseline after Holm's
correction; patients as the unit; the groups pooling the modalities, and each modality's
groups in a digest of its own when the statistics have them) with every test in a collapsed
block, and how the statistics treated the unit, missing cases, NaN metrics, ties and zero
differences, and with ``cost`` the study's training cost table (``calf report cost``). After
the studies: the paper-vs-suite table, or one line saying that no study
ran the authors' pooled protocol and how to run it. ``write_readme`` can also write the HTML
report's front page (``calf.report.answer.front_page``) together with the README.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from calf.defaults import ALPHA
from calf.errors import CalfError
from calf.report.tables.document import METRIC_DECIMALS
from calf.stats.collect import GROUP_KEYS, POOLED, pooled_groups
from calf.stats.run import STATS_JSON

if TYPE_CHECKING:
    import pandas as pd

    from calf.report.answer import StudyAnswer
    from calf.report.where import WhereAnswer

FIGURE_TITLES = {
    "dice": "Dice per patient and loss",
    "hd95": "HD95 (mm) per patient and loss",
    "critical_difference": "Critical-difference diagrams (Dice)",
    "imbalance": "Imbalance of the training sets and CALF's branch thresholds",
    "branches": "Share of each CALF branch over training (batch scope)",
}
# drawn from calf analyse's tables (calf report figures --analysis-dir): listed for a study
# whose analysis the README has
ANALYSIS_FIGURE_TITLES = {
    "advantage_volume": "CALF's advantage per patient against tumour volume",
    "imbalance_advantage": "CALF's median advantage against the training set's imbalance",
    "rank_blobs": "Bootstrap ranks of the losses (blob plot)",
    "significance_map": "Significance maps of the pairwise one-sided tests",
}
TABLE_FORMATS = ("md", "csv", "tex", "html")
STATS_FILES = ("paired.csv", "friedman.csv", "ranks.csv", "nemenyi.csv", STATS_JSON)


def _link(target: Path, base: Path) -> str:
    return Path(os.path.relpath(target, base)).as_posix()


def _require(path: Path) -> Path:
    if not path.is_file():
        raise CalfError(f"{path}: no such file (run the report's rules first)")
    return path


def paired_digest(paired: "pd.DataFrame") -> "pd.DataFrame":
    """Per CALF loss and metric: tests run, significant wins, significant losses, no difference."""
    import pandas as pd

    rows = []
    for (calf_loss, metric), tests in paired.groupby(["calf_loss", "metric"], sort=False):
        significant = tests["significant"].astype(bool)
        wins = int((significant & (tests["favours"] == calf_loss)).sum())
        losses = int((significant & (tests["favours"] == tests["baseline"])).sum())
        rows.append({"CALF loss": calf_loss, "metric": metric, "tests": len(tests),
                     "significantly better": wins, "significantly worse": losses,
                     "no significant difference": len(tests) - wins - losses})
    return pd.DataFrame(rows)


def demote_headings(markdown: str) -> str:
    """Every Markdown heading one level deeper (an embedded document under a section)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _fmt(x: float, digits: int) -> str:
    return "–" if x != x else f"{x:.{digits}f}"


def paired_details(paired: "pd.DataFrame", metric: str) -> list[str]:
    """Every test of ``metric``, one row per group and comparison, in a collapsed block."""
    rows = paired[paired["metric"] == metric]
    if rows.empty:
        return []
    digits = METRIC_DECIMALS.get(metric, 3)
    lines = ["<details><summary>Every test on " + metric + " (median difference CALF − baseline "
             "with its 95% CI, Holm-adjusted p, rank-biserial r)</summary>", "",
             "| dataset | model | ratio | CALF loss | baseline | patients "
             "| median diff [95% CI] | p (Holm) | r | favours |",
             "|:---|:---|:---|:---|:---|---:|---:|---:|---:|:---|"]
    for r in rows.itertuples(index=False):
        mark = "**" if bool(r.significant) else ""
        lines.append(
            f"| {r.dataset} | {r.model} | {r.ratio} | {r.calf_loss} | {r.baseline} "
            f"| {r.n_patients} | {_fmt(r.median_diff, digits)} "
            f"[{_fmt(r.ci_low, digits)}, {_fmt(r.ci_high, digits)}] | "
            f"{mark}{_fmt(r.p_holm, 4)}{mark} | {_fmt(r.rank_biserial, 2)} | {r.favours} |")
    return lines + ["", "Bold p: significant after Holm's correction.", "", "</details>", ""]


def _summary_inline(summary_md: Path) -> list[str]:
    """The summary table's Markdown, its headings two levels deeper (under the study)."""
    return [demote_headings(demote_headings(summary_md.read_text().strip())), ""]


def _paired_section(stats: dict, every: pd.DataFrame, paired: pd.DataFrame) -> list[str]:
    settings = stats.get("settings", {})
    groups = paired[list(GROUP_KEYS)].drop_duplicates() if len(paired) else paired
    lines = [
        "### Paired tests", "",
        (f"Each CALF loss against every baseline, per dataset, model and filter ratio "
         f"({len(groups)} groups): paired Wilcoxon signed-rank tests over patients (each "
         f"patient's mean over modalities, then exams, then seeds), Holm-corrected over each "
         f"{settings.get('family', 'group')}, alpha {settings.get('alpha', ALPHA)}."),
        "",
    ]
    if len(paired):
        lines += [paired_digest(paired).to_markdown(index=False), ""]
        for metric in dict.fromkeys(paired["metric"]):
            lines += paired_details(paired, metric)
        for modality, tests in every[every["modality"] != POOLED].groupby("modality"):
            lines += [f"Modality `{modality}` alone (its own groups and Holm families; each "
                      f"patient's mean over exams, then seeds):", "",
                      paired_digest(tests).to_markdown(index=False), ""]
    else:
        lines += ["No paired tests: the study has no CALF loss.", ""]
    return lines


def _cost_section(study: str, report_dir: Path) -> list[str]:
    """The study's cost table (``STUDY/cost.md``) inline under the study, with its links."""
    cost = report_dir / study / "cost"
    text = _require(cost.with_suffix(".md")).read_text().strip()
    links = ", ".join(f"[{fmt}]({_link(_require(cost.with_suffix('.' + fmt)), report_dir)})"
                      for fmt in ("csv", "html"))
    return [demote_headings(demote_headings(text)), "", f"The cost also as {links}.", ""]


def _study_section(study: str, report_dir: Path, stats_dir: Path, datasets: Sequence[str],
                   answer: StudyAnswer | None = None, cost: bool = False,
                   where: WhereAnswer | None = None) -> list[str]:
    """One study's README section; ``answer`` is read from ``stats_dir`` when not given;
    ``cost``: the study's cost table last; ``where``: its "Where CALF helps" paragraphs
    after the answer."""
    import pandas as pd

    from calf.report.answer import answer_markdown, read_stats_record, study_answer
    from calf.report.where import WHERE_TITLE, where_markdown

    answer = answer or study_answer(stats_dir, study=study)

    stats = read_stats_record(stats_dir)
    every = pd.read_csv(_require(stats_dir / "paired.csv"), keep_default_na=True,
                        dtype={"ratio": str, "modality": str})
    paired = pooled_groups(every, f"{stats_dir / 'paired.csv'}")
    summary = report_dir / study / "summary"
    links = ", ".join(f"[{fmt}]({_link(_require(summary.with_suffix('.' + fmt)), report_dir)})"
                      for fmt in TABLE_FORMATS)
    lines = [f"## Study `{study}`", "", "### Answer", "", answer_markdown(answer)]
    if where is not None:
        lines += [f"#### {WHERE_TITLE}", "", where_markdown(where)]
    lines += _summary_inline(summary.with_suffix(".md"))
    lines += [f"The metrics per loss also as {links}.", "", "### Figures", ""]
    figures = report_dir / study / "figures"
    names = [(n, t) for n, t in FIGURE_TITLES.items()]
    if where is not None:
        names += list(ANALYSIS_FIGURE_TITLES.items())
    names += [(f"overlays_{d}", f"Best, median and worst slices: {d}") for d in datasets]
    for name, title in names:
        png = _link(_require(figures / f"{name}.png"), report_dir)
        svg = _link(_require(figures / f"{name}.svg"), report_dir)
        lines += [f"**{title}** ([SVG]({svg}))", "", f"![{title}]({png})", ""]
    lines += _paired_section(stats, every, paired)
    stats_links = ", ".join(f"[{name}]({_link(_require(stats_dir / name), report_dir)})"
                            for name in STATS_FILES)
    lines += [f"Statistics files: {stats_links}", "", "### How the statistics treat the data", ""]
    lines += [f"- **{key.replace('_', ' ')}**: {text}"
              for key, text in stats.get("handling", {}).items()]
    if cost:
        lines += ["", *_cost_section(study, report_dir)]
    return lines + [""]


def _paper_section(report_dir: Path) -> list[str]:
    """The paper-vs-suite table, or one line when no study ran the pooled protocol."""
    import pandas as pd

    from calf.report.tables.paper import all_not_run, not_run_line

    paper = _require(report_dir / "paper_vs_suite.md")
    csv = _require(paper.with_suffix(".csv"))
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CalfError(f"{csv}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if "status" not in table.columns:
        raise CalfError(f"{csv}: missing column status (written by calf report paper)")
    links = (f"[CSV]({_link(csv, report_dir)}), "
             f"[LaTeX]({_link(_require(paper.with_suffix('.tex')), report_dir)})")
    if all_not_run(table["status"]):
        return ["## Paper vs suite", "", f"{not_run_line()} (Every value: {links}.)", ""]
    return [demote_headings(paper.read_text().strip()), "", f"(Also as {links}.)", ""]


def readme_text(report_dir: str | Path, stats_root: str | Path,
                studies: dict[str, Sequence[str]],
                answers: dict[str, StudyAnswer] | None = None, cost: bool = False,
                analysis_root: str | Path | None = None,
                wheres: dict[str, WhereAnswer] | None = None) -> str:
    """The README's Markdown; ``answers`` (by study) are read from the stats when not given;
    ``cost``: each study's cost table (``STUDY/cost.md``) ends its section; each study with
    ``analysis_root/<study>/analysis.json`` gets its "Where CALF helps" paragraphs
    (``wheres``, by study, when given: read by the caller)."""
    from calf.report.answer import study_answer
    from calf.report.where import read_wheres

    report_dir, stats_root = Path(report_dir), Path(stats_root)
    if not studies:
        raise CalfError("no study given")
    answers = answers or {}
    wheres = read_wheres(analysis_root, list(studies)) if wheres is None else wheres
    lines = [
        "# CALF benchmark: results",
        "",
        (f"Each study's answer first, then its tables, figures and tests (written by `calf "
         f"report readme` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; with captions: "
         "`snakemake --report results/report.html`; per-case metrics in `results/metrics/`, "
         "runs in MLflow)."),
        "",
    ]
    for study, datasets in studies.items():
        answer = answers.get(study) or study_answer(stats_root / study, study=study)
        lines += _study_section(study, report_dir, stats_root / study, datasets, answer, cost,
                                wheres.get(study))
    lines += _paper_section(report_dir)
    return "\n".join(lines).rstrip() + "\n"


def write_readme(report_dir: str | Path, stats_root: str | Path, studies: dict[str, Sequence[str]],
                 out: str | Path, front_page: str | Path | None = None,
                 description: str | Path | None = None, cost: bool = False,
                 force: bool = False, analysis_root: str | Path | None = None) -> list[Path]:
    """Write the README (``studies`` maps each study to its dataset names: overlay grids;
    ``cost``: with each study's cost table; ``analysis_root``: each study analysed there,
    ``analysis_root/<study>/analysis.json``, with its "Where CALF helps" paragraphs)
    and, with ``front_page``, the HTML report's front page: the answer of every study in
    reStructuredText (and where CALF helps), then the text of ``description`` unchanged.
    Both files are written
    together or neither (``calf.report.tables.io.publish``), existing files only with
    ``force``; returns their paths."""
    from calf.report.answer import check_target, read_description, study_answer
    from calf.report.answer import front_page as front_page_text
    from calf.report.tables.io import publish
    from calf.report.where import read_wheres

    if (front_page is None) != (description is None):
        raise CalfError("--front-page and --description go together: give both or neither")
    out = check_target(out, "--out")
    texts = {}
    answers = {study: study_answer(Path(stats_root) / study, study=study) for study in studies}
    wheres = read_wheres(analysis_root, list(studies))
    texts[out] = readme_text(report_dir, stats_root, studies, answers, cost, wheres=wheres)
    if front_page is not None:
        front_page = check_target(front_page, "--front-page")
        if front_page.resolve() == out.resolve():
            raise CalfError(f"--front-page {front_page}: the same file as --out")
        texts[front_page] = front_page_text(list(answers.values()),
                                            read_description(description), wheres)
    return publish(texts, force=force)
