"""The answer of each study, first: whom each CALF loss beats, ties and loses to, and the best loss.

``study_answer`` reads one study's ``calf stats`` outputs (``paired.csv``, ``ranks.csv``,
``stats.json``) and keeps, per dataset, model and filter ratio (the groups that pool the
modalities, ``calf.stats.collect.pooled_groups``):

- for every CALF loss of the study, the baselines it beats, ties and loses to on Dice: a
  paired test's ``significant`` (Holm-corrected) and ``favours`` decide; a test that could
  not run (NaN p) is neither and is named in the caveats;
- the best loss by mean rank on Dice (``ranks.csv``; ties: all of them) with its mean Dice;
- caveats: the runs that collapsed (``stats.json`` ``runs_collapsed``, written by
  ``calf.stats.run.collapsed_runs``), and the groups where no test can reach significance:
  with n patients the smallest two-sided exact Wilcoxon p is 2 / 2^n, and Holm's first step
  multiplies it by the family size; when that exceeds alpha for every test of the group, the
  tests say nothing whatever the data (e.g. 6 patients, 24 tests: 2/64 x 24 = 0.75).

``answer_markdown`` renders it for the README (under a heading the caller writes),
``front_page`` as a reStructuredText document for the HTML report: sections, a list-table
and bullets, no explicit targets (Snakemake adds its own, e.g. ``.. _Statistics:``); given
a study's ``calf analyse`` answer (``calf.report.where``), its "Where CALF helps" paragraphs
follow the study's answer in a sub-section.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from calf._json import read_json_object
from calf.defaults import ALPHA
from calf.errors import CalfError
from calf.layout import NATURAL, ratio_sort_key
from calf.naming import LOSS_NAMES, METRIC_NAMES, MODEL_NAMES, display, ordered
from calf.report.tables.document import METRIC_DECIMALS
from calf.report.tables.render import markdown_escape
from calf.stats.collect import pooled_groups
from calf.stats.run import STATS_JSON

if TYPE_CHECKING:
    from calf.report.where import WhereAnswer

ANSWER_METRIC = "dice"
FRONT_PAGE_TITLE = "CALF benchmark: the answer"
DESCRIPTION_TITLE = "About this report"
NONE = "none"
_RST_RE = re.compile(r"([\\`*_|\[\]<>])")


@dataclass
class Comparison:
    """One CALF loss against the baselines of a group (display names)."""

    calf_loss: str
    beats: list[str]
    ties: list[str]
    loses: list[str]
    untested: list[str] = field(default_factory=list)


@dataclass
class GroupAnswer:
    """One dataset, model and ratio: the best loss(es) by mean rank, each CALF loss's
    comparisons, the patients and the smallest p any of the group's tests can reach."""

    dataset: str
    model: str
    ratio: str
    best: list[tuple[str, float]]  # (display name, mean of the metric)
    comparisons: list[Comparison]
    n_patients: int
    min_attainable_p: float  # after Holm; NaN without tests

    @property
    def label(self) -> str:
        text = f"{self.dataset}, {display(self.model, MODEL_NAMES)}"
        return text if self.ratio == NATURAL else f"{text}, ratio {self.ratio}"


@dataclass
class StudyAnswer:
    """A study's answer: its groups, the runs that collapsed (None: not recorded)."""

    study: str
    metric: str
    alpha: float
    calf_losses: list[str]  # display names
    groups: list[GroupAnswer]
    collapsed: list[dict[str, object]] | None

    @property
    def has_ratios(self) -> bool:
        return any(g.ratio != NATURAL for g in self.groups)


def min_attainable_p(n_patients: int, family_size: int) -> float:
    """The smallest Holm-adjusted p a two-sided exact Wilcoxon test of ``n_patients`` pairs
    can reach in a family of ``family_size`` tests: 2 / 2^n times the family size (Holm's
    first step), at most 1."""
    if n_patients < 1 or family_size < 1:
        return math.nan
    return min(1.0, family_size * 2.0 / 2.0 ** n_patients)


def read_stats_record(stats_dir: str | Path) -> dict:
    """A study's ``stats.json`` (written by ``calf stats``): a JSON object, or a CalfError
    naming the file (missing: run calf stats first)."""
    path = Path(stats_dir) / STATS_JSON
    if not path.is_file():
        raise CalfError(f"{path}: no such file (run calf stats first)")
    return read_json_object(path, "calf stats")


def _read_csv(path: Path):
    import pandas as pd

    if not path.is_file():
        raise CalfError(f"{path}: no such file (run calf stats first)")
    try:
        return pd.read_csv(path, dtype={"ratio": str, "modality": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CalfError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None


def _need(table, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")


def _comparisons(tests, calf_losses: Sequence[str]) -> list[Comparison]:
    out = []
    for calf in calf_losses:
        mine = tests[tests["calf_loss"] == calf]
        if mine.empty:
            continue
        beats, ties, loses, untested = [], [], [], []
        for baseline in ordered(mine["baseline"], LOSS_NAMES):
            row = mine[mine["baseline"] == baseline].iloc[0]
            name = display(baseline, LOSS_NAMES)
            if math.isnan(float(row["p_holm"])):
                untested.append(name)
            elif bool(row["significant"]) and row["favours"] == calf:
                beats.append(name)
            elif bool(row["significant"]) and row["favours"] == baseline:
                loses.append(name)
            else:
                ties.append(name)
        out.append(Comparison(display(calf, LOSS_NAMES), beats, ties, loses, untested))
    return out


def _best(ranks) -> list[tuple[str, float]]:
    ranks = ranks[ranks["mean_rank"].notna()]
    if ranks.empty:
        return []
    top = ranks[ranks["mean_rank"] == ranks["mean_rank"].min()]
    order = ordered(top["loss"], LOSS_NAMES)
    means = dict(zip(top["loss"], top["mean"]))
    return [(display(loss, LOSS_NAMES), float(means[loss])) for loss in order]


def group_order(group: tuple[str, str, str]) -> tuple:
    """Sort key of a (dataset, model, ratio) group: by dataset, then the models in the
    canonical order (unknown ones after, by name), then natural first and ratios ascending."""
    dataset, model, ratio = group
    known = list(MODEL_NAMES)
    return (dataset, known.index(model) if model in known else len(known), model,
            ratio_sort_key(ratio))


def study_answer(stats_dir: str | Path, metric: str = ANSWER_METRIC,
                 study: str | None = None) -> StudyAnswer:
    """The answer of the study whose ``calf stats`` outputs are in ``stats_dir``; ``study``
    names it (default: the name stats.json records, else the folder's)."""
    stats_dir = Path(stats_dir)
    record = read_stats_record(stats_dir)
    paired_path, ranks_path = stats_dir / "paired.csv", stats_dir / "ranks.csv"
    paired = pooled_groups(_read_csv(paired_path), str(paired_path)).copy()
    ranks = pooled_groups(_read_csv(ranks_path), str(ranks_path)).copy()
    _need(paired, ("dataset", "model", "ratio", "metric", "calf_loss", "baseline", "n_patients",
                   "p_holm", "significant", "favours", "family_size"), paired_path)
    _need(ranks, ("dataset", "model", "ratio", "metric", "loss", "mean_rank", "mean"), ranks_path)
    settings = record.get("settings") or {}
    alpha = float(settings.get("alpha", ALPHA))
    calf_losses = [str(c) for c in settings.get("calf_losses") or []]
    for frame in (paired, ranks):
        frame["ratio"] = frame["ratio"].fillna(NATURAL).astype(str)
        for key in ("dataset", "model"):
            frame[key] = frame[key].astype(str)
    keys = ["dataset", "model", "ratio"]
    groups = set(ranks[keys].itertuples(index=False, name=None)) | set(
        paired[keys].itertuples(index=False, name=None))
    answers = []
    for group in sorted(groups, key=group_order):
        tests = paired[(paired[keys] == list(group)).all(axis=1)]
        on_metric = tests[tests["metric"] == metric]
        ranked = ranks[(ranks[keys] == list(group)).all(axis=1) & (ranks["metric"] == metric)]
        reachable = [min_attainable_p(int(n), int(m))
                     for n, m in zip(tests["n_patients"], tests["family_size"])]
        reachable = [p for p in reachable if not math.isnan(p)]
        answers.append(GroupAnswer(
            *group, best=_best(ranked), comparisons=_comparisons(on_metric, calf_losses),
            n_patients=int(tests["n_patients"].max()) if len(tests) else 0,
            min_attainable_p=min(reachable) if reachable else math.nan))
    collapsed = record.get("runs_collapsed")
    return StudyAnswer(study or record.get("study") or stats_dir.name, metric, alpha,
                       [display(c, LOSS_NAMES) for c in calf_losses], answers,
                       None if collapsed is None else list(collapsed))


# -- the words, format-free -----------------------------------------------------------

def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else NONE


def _run_label(run: dict) -> str:
    text = (f"{run['dataset']}, {display(str(run['model']), MODEL_NAMES)}, "
            f"{display(str(run['loss']), LOSS_NAMES)}, fold {run['fold']}")
    extra = [f"ratio {run['ratio']}" if run.get("ratio") not in (None, NATURAL) else "",
             f"seed {run['seed']}" if run.get("seed") is not None else ""]
    extra = [e for e in extra if e]
    return text + (f" ({', '.join(extra)})" if extra else "")


def lead(answer: StudyAnswer) -> list[str]:
    """The lead sentences: each CALF loss's tally over the groups, the best losses."""
    metric = display(answer.metric, METRIC_NAMES)
    n = len(answer.groups)
    if not n:
        return ["No statistics groups: calf stats found nothing to compare."]
    axes = "dataset × model" + (" × ratio" if answer.has_ratios else "")
    groups = f"{n} group{'s' if n != 1 else ''} ({axes})"
    text = []
    tallies = []
    for calf in answer.calf_losses:
        mine = [c for g in answer.groups for c in g.comparisons if c.calf_loss == calf]
        if not mine:
            continue
        total = sum(len(c.beats) + len(c.ties) + len(c.loses) + len(c.untested) for c in mine)
        beats, loses = sum(len(c.beats) for c in mine), sum(len(c.loses) for c in mine)
        tallies.append(f"{calf} beats {beats}, ties {total - beats - loses} and loses to "
                       f"{loses} of its {total} comparison{'s' if total != 1 else ''} with "
                       "a baseline")
    if tallies:
        text.append(f"On {metric}, paired Wilcoxon tests over patients, Holm-corrected, alpha "
                    f"{answer.alpha:g}, over {groups}: " + "; ".join(tallies) + ".")
    else:
        text.append(f"No CALF loss in this study: no paired tests; {groups}.")
    best = Counter(name for g in answer.groups for name, _ in g.best)
    if best:
        ranked = ", ".join(f"{name} in {k} of {n}" for name, k in best.most_common())
        text.append(f"Best by mean rank on {metric}: {ranked}.")
    return text


def table(answer: StudyAnswer) -> tuple[list[str], list[list[str]]]:
    """The compact table: header and rows (one per group and CALF loss)."""
    metric = display(answer.metric, METRIC_NAMES)
    digits = METRIC_DECIMALS.get(answer.metric, 3)
    several = len(answer.calf_losses) > 1
    header = ["dataset", "model", *(["ratio"] if answer.has_ratios else []),
              f"best by mean rank (mean {metric})", *(["CALF loss"] if several else []),
              "CALF beats" if not several else "beats", "ties", "loses to"]
    rows = []
    for g in answer.groups:
        best = "; ".join(f"{name} ({mean:.{digits}f})" for name, mean in g.best) or "–"
        first = [g.dataset, display(g.model, MODEL_NAMES),
                 *([g.ratio] if answer.has_ratios else []), best]
        comparisons = g.comparisons or [None]
        for c in comparisons:
            cells = ["–", "–", "–"] if c is None else [_names(c.beats), _names(c.ties),
                                                       _names(c.loses)]
            name = [] if not several else ["–" if c is None else c.calf_loss]
            rows.append([*first, *name, *cells])
    return header, rows


def caveats(answer: StudyAnswer) -> list[str]:
    """Collapsed runs, groups where no test can reach significance, tests that did not run."""
    out = []
    if answer.collapsed is None:
        out.append("Collapsed runs: not checked (stats.json written by an older calf stats; "
                   "run calf stats again).")
    else:
        for kind, words in (("nothing", "predicted nothing on every case"),
                            ("everything", "predicted (nearly) everything on every case")):
            runs = [_run_label(r) for r in answer.collapsed if r.get("collapse") == kind]
            if runs:
                out.append(f"Collapsed run{'s' if len(runs) > 1 else ''} ({words}): "
                           + "; ".join(runs) + ".")
    hopeless: dict[tuple[int, float], list[str]] = {}
    for g in answer.groups:
        if not math.isnan(g.min_attainable_p) and g.min_attainable_p > answer.alpha:
            hopeless.setdefault((g.n_patients, g.min_attainable_p), []).append(g.label)
    for (n, p), labels in hopeless.items():
        out.append(f"{'; '.join(labels)}: with {n} patients no test in this group can reach "
                   f"significance (smallest attainable p after Holm {p:.3g} > alpha "
                   f"{answer.alpha:g}).")
    for g in answer.groups:
        for c in g.comparisons:
            if c.untested:
                out.append(f"{g.label}: {c.calf_loss} vs {_names(c.untested)}: no test "
                           "(too few patients with values).")
    return out


# -- Markdown and reStructuredText ------------------------------------------------------

def answer_markdown(answer: StudyAnswer) -> str:
    """The answer as Markdown: lead, table, caveats (no heading: the caller writes it)."""
    header, rows = table(answer)
    lines = [" ".join(markdown_escape(t) for t in lead(answer)), ""]
    if rows:
        lines.append("| " + " | ".join(markdown_escape(h) for h in header) + " |")
        lines.append("|" + "|".join(":---" for _ in header) + "|")
        lines += ["| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in rows]
        lines.append("")
    notes = caveats(answer)
    if notes:
        lines += ["Caveats:", ""] + [f"- {markdown_escape(n)}" for n in notes] + [""]
    return "\n".join(lines)


def rst_escape(text: str) -> str:
    """``text`` shown literally in reStructuredText (inline markup characters escaped)."""
    return _RST_RE.sub(r"\\\1", text)


def _rst_heading(text: str, char: str, over: bool = False) -> list[str]:
    rule = char * max(len(text), 3)
    return [rule, text, rule] if over else [text, rule]


def answer_rst(answer: StudyAnswer) -> list[str]:
    """The answer as a reStructuredText section (lead, list-table, caveat bullets)."""
    header, rows = table(answer)
    lines = [*_rst_heading(f"Study {rst_escape(answer.study)}", "-"), "",
             " ".join(rst_escape(t) for t in lead(answer)), ""]
    if rows:
        lines += [".. list-table::", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            lines += [f"   {'*' if i == 0 else ' '} - {rst_escape(c)}" for i, c in enumerate(row)]
        lines.append("")
    notes = caveats(answer)
    if notes:
        lines += ["Caveats:", ""] + [f"- {rst_escape(n)}" for n in notes] + [""]
    return lines


def front_page(answers: Sequence[StudyAnswer], description: str = "",
               where: Mapping[str, WhereAnswer] | None = None) -> str:
    """The HTML report's front page: a title, every study's answer (with ``where``, by
    study, its "Where CALF helps" paragraphs from calf analyse in a sub-section), then
    ``description`` (the workflow's own text) unchanged, in a section of its own."""
    from calf.report.where import WHERE_TITLE, where_rst

    where = where or {}
    lines = [*_rst_heading(FRONT_PAGE_TITLE, "=", over=True), "",
             ("Each study's answer from its statistics: per dataset, model and filter ratio, "
              "whom each CALF loss beats, ties and loses to, the best loss by mean rank, and "
              "the caveats."), ""]
    for answer in answers:
        lines += answer_rst(answer)
        if answer.study in where:
            lines += [*_rst_heading(WHERE_TITLE, "~"), "", *where_rst(where[answer.study])]
    if description:
        # its own section, so that it does not read as part of the last study's
        lines += [*_rst_heading(DESCRIPTION_TITLE, "-"), "", description]
    return "\n".join(lines).rstrip() + "\n"


def read_description(path: str | Path) -> str:
    """The description file's text (``--description``), unchanged."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalfError(f"--description {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CalfError(f"--description {path}: not readable ({err})") from None


def check_target(path: str | Path, option: str) -> Path:
    """An output path that is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise CalfError(f"{option} {path}: is a folder, expected a file path to write")
    return path

