"""``results/report/README.md``: the report's tables and figures, linked for a code-hosting site.

The README is the plain-file twin of Snakemake's HTML report: a section per study with a
digest of the paired tests (how often each CALF loss beat, lost to or tied with a baseline
after Holm's correction; patients as the unit; the groups pooling the modalities, and each
modality's groups in a digest of its own when the statistics have them), how the statistics
treated the unit, missing cases, NaN metrics, ties and zero differences, and relative links
to every table and figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.report.tables_layout import METRIC_DECIMALS
from calf.stats.collect import GROUP_KEYS, POOLED, pooled_groups

if TYPE_CHECKING:
    import pandas as pd

FIGURE_TITLES = {
    "dice": "Dice per patient and loss",
    "hd95": "HD95 (mm) per patient and loss",
    "critical_difference": "Critical-difference diagrams (Dice)",
    "imbalance": "Imbalance of the training sets and CALF's branch thresholds",
    "branches": "Share of each CALF branch over training (batch scope)",
}
TABLE_FORMATS = ("md", "csv", "tex", "html")
STATS_FILES = ("paired.csv", "friedman.csv", "ranks.csv", "nemenyi.csv", "stats.json")


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
             "| dataset | model | ratio | CALF loss | baseline | patients | median diff [95% CI] | p (Holm) | r | favours |",
             "|:---|:---|:---|:---|:---|---:|---:|---:|---:|:---|"]
    for r in rows.itertuples(index=False):
        mark = "**" if bool(r.significant) else ""
        lines.append(
            f"| {r.dataset} | {r.model} | {r.ratio} | {r.calf_loss} | {r.baseline} | {r.n_patients} | "
            f"{_fmt(r.median_diff, digits)} [{_fmt(r.ci_low, digits)}, {_fmt(r.ci_high, digits)}] | "
            f"{mark}{_fmt(r.p_holm, 4)}{mark} | {_fmt(r.rank_biserial, 2)} | {r.favours} |")
    return lines + ["", "Bold p: significant after Holm's correction.", "", "</details>", ""]


def _study_section(study: str, report_dir: Path, stats_dir: Path, datasets: Sequence[str]) -> list[str]:
    import pandas as pd

    stats = json.loads(_require(stats_dir / "stats.json").read_text())
    every = pd.read_csv(_require(stats_dir / "paired.csv"), keep_default_na=True,
                        dtype={"ratio": str, "modality": str})
    paired = pooled_groups(every, f"{stats_dir / 'paired.csv'}")
    settings = stats.get("settings", {})
    lines = [f"## Study `{study}`", ""]
    groups = paired[list(GROUP_KEYS)].drop_duplicates() if len(paired) else paired
    lines += [
        f"Each CALF loss against every baseline, per dataset, model and filter ratio "
        f"({len(groups)} groups): paired Wilcoxon signed-rank tests over patients (each "
        f"patient's mean over modalities, then exams, then seeds), Holm-corrected over each "
        f"{settings.get('family', 'group')}, alpha {settings.get('alpha', 0.05)}.",
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
    lines += ["How the statistics treat the data:", ""]
    lines += [f"- **{key.replace('_', ' ')}**: {text}" for key, text in stats.get("handling", {}).items()]
    lines += ["", "### Tables", ""]
    summary = report_dir / study / "summary"
    links = ", ".join(f"[{fmt}]({_link(_require(summary.with_suffix('.' + fmt)), report_dir)})"
                      for fmt in TABLE_FORMATS)
    lines.append(f"- Metrics per loss (mean ± sd, median [IQR], best in bold, significance markers): {links}")
    stats_links = ", ".join(f"[{name}]({_link(_require(stats_dir / name), report_dir)})"
                            for name in STATS_FILES)
    lines += [f"- Statistics: {stats_links}", "", "### Figures", ""]
    figures = report_dir / study / "figures"
    names = [(n, t) for n, t in FIGURE_TITLES.items()]
    names += [(f"overlays_{d}", f"Best, median and worst slices: {d}") for d in datasets]
    for name, title in names:
        png = _link(_require(figures / f"{name}.png"), report_dir)
        svg = _link(_require(figures / f"{name}.svg"), report_dir)
        lines += [f"**{title}** ([SVG]({svg}))", "", f"![{title}]({png})", ""]
    return lines


def write_readme(report_dir: str | Path, stats_root: str | Path, studies: dict[str, Sequence[str]],
                 out: str | Path) -> Path:
    """Write the README; ``studies`` maps each study to its dataset names (overlay grids)."""
    report_dir, stats_root, out = Path(report_dir), Path(stats_root), Path(out)
    if not studies:
        raise CalfError("no study given")
    paper = _require(report_dir / "paper_vs_suite.md")
    lines = [
        "# CALF benchmark: results",
        "",
        f"Written by `calf report readme` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"for the studies {', '.join(f'`{s}`' for s in studies)}. The same tables and figures with "
        "captions: `snakemake --report results/report.html`. Per-case metrics: `results/metrics/`; "
        "runs: MLflow (`results/mlflow.db` unless configured otherwise).",
        "",
        demote_headings(paper.read_text().strip()),
        "",
        f"(Also as [CSV]({_link(_require(paper.with_suffix('.csv')), report_dir)}), "
        f"[LaTeX]({_link(_require(paper.with_suffix('.tex')), report_dir)}).)",
        "",
    ]
    for study, datasets in studies.items():
        lines += _study_section(study, report_dir, stats_root / study, datasets)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
