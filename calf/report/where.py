"""Where CALF helps: one paragraph per group of a study, from its ``calf analyse`` folder.

``read_where`` reads ``results/analysis/<study>/`` (``size_classes.csv``,
``interaction.csv``, ``rank_stability.csv``, ``analysis.json``) and keeps, per dataset,
model and filter ratio, on the answer metric (Dice, ``calf.report.answer.ANSWER_METRIC``):

- per CALF loss and size class, the baselines it beats ("better"), loses to ("worse") and
  ties ("no difference"; a test that could not run, NaN p, is "untested"), with the median
  difference (CALF - baseline) and Holm's p of the significant ones;
- per CALF loss and baseline, the primary estimate of the change of CALF's advantage per
  doubling of the tumour size (``interaction.csv``'s ``primary`` row: a mixed model, or
  Theil-Sen where the mixed model's assumptions fail) with its CI and p, or why none;
- the best loss by mean metric and the share of the bootstrap resamples of the patients in
  which it stays best, with Kendall's tau between the bootstrap and full rankings.

The words are made once, format-free (``where_lead``, ``group_paragraph``), and rendered by
``where_markdown`` (the README) and ``where_rst`` (the HTML report's front page). The
paragraphs stay compact: a class where every test ties is merged with its neighbours
("ties all 6 baselines in Q2-Q4"), and with more than ``FULL_SLOPES`` baselines only the
significant changes with size are given in full.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calf.analysis.run import ANALYSIS_JSON, read_analysis_record, read_table
from calf.analysis.size_effect import BETTER, NO_DIFFERENCE, WORSE
from calf.defaults import ALPHA
from calf.layout import NATURAL
from calf.naming import LOSS_NAMES, METRIC_NAMES, MODEL_NAMES, display, ordered
from calf.report.tables.document import METRIC_DECIMALS
from calf.report.tables.render import markdown_escape

UNTESTED = "untested"  # a test that could not run (NaN p), beside the analysis's verdicts
METHOD_NAMES = {"mixedlm": "mixed model", "theil-sen": "Theil-Sen"}
FULL_SLOPES = 2  # up to this many baselines every slope is given in full
FULL_CHANGES = 2  # up to this many comparisons whose verdict changes are named
SIGNIFICANT_DIGITS = 3  # of the class bounds
P_FLOOR = 0.001  # smaller p-values are written "< 0.001"
TAU_DIGITS = 2
WHERE_TITLE = "Where CALF helps"
NOTES_TITLE = "The notes of calf analyse"
NO_PRIMARY = "no primary estimate in interaction.csv"
_NO_SLOPE = re.compile(r"^\s*no slope:\s*", re.IGNORECASE)  # interaction.py's NaN reasons
_KEYS = ["dataset", "model", "ratio"]
_SIZE_NEEDS = ("dataset", "model", "ratio", "metric", "size_class", "class_low", "class_high",
               "size_unit", "calf_loss", "baseline", "n_patients", "median_diff", "p_holm",
               "verdict", "family_size")
_SLOPE_NEEDS = ("dataset", "model", "ratio", "metric", "calf_loss", "baseline", "method",
                "slope_per_doubling", "ci_low", "ci_high", "p_value", "primary", "reason")
_ROBUST_NEEDS = ("dataset", "model", "ratio", "preset", "metric", "calf_loss", "baseline",
                 "verdict")
_RANK_NEEDS = ("dataset", "model", "ratio", "metric", "n_patients", "resamples", "best",
               "best_share", "tau_median")


@dataclass
class ClassTest:
    """One size class, one baseline: the verdict (CALF's view) and, for the significant
    ones, the median difference CALF - baseline and Holm's p."""

    baseline: str  # display name
    verdict: str  # BETTER, WORSE, NO_DIFFERENCE or UNTESTED
    median_diff: float
    p_holm: float


@dataclass
class SizeClass:
    """A size class of a group (bounds in ``unit``) and a CALF loss's tests in it."""

    name: str
    low: float
    high: float
    unit: str
    n_patients: int
    tests: list[ClassTest]

    @property
    def tumour_free(self) -> bool:
        return self.high == 0


@dataclass
class Slope:
    """The primary estimate of the change of CALF's advantage over ``baseline`` per
    doubling of the tumour size (NaN: not estimated, ``reason`` says why)."""

    baseline: str  # display name
    method: str  # display name ("mixed model", "Theil-Sen")
    slope: float
    ci_low: float
    ci_high: float
    p_value: float
    reason: str = ""


@dataclass
class CalfWhere:
    """One CALF loss of a group: its tests per size class and its slopes per baseline."""

    calf_loss: str  # display name
    classes: list[SizeClass]
    slopes: list[Slope]
    # whether any class test can reach Holm significance with its patients (a two-sided
    # exact Wilcoxon's smallest p times the family size: calf.report.answer.min_attainable_p)
    reachable: bool = True


@dataclass
class RankStability:
    """The best loss by mean metric and how often it stays best over the bootstraps."""

    best: str  # display name
    best_share: float
    resamples: int
    tau_median: float
    n_patients: int


@dataclass
class Robustness:
    """How a group's paired verdicts fare across empty-mask presets and metrics
    (``robustness.csv``): the number of (preset, metric) combinations, of comparisons, and
    per comparison whose verdict changes, how many combinations give each verdict."""

    n_combinations: int
    n_comparisons: int
    changes: dict[tuple[str, str], dict[str, int]]  # (CALF loss, baseline): verdict -> count


@dataclass
class GroupWhere:
    """One dataset, model and ratio."""

    dataset: str
    model: str
    ratio: str
    calf: list[CalfWhere]
    ranks: RankStability | None
    robust: Robustness | None = None

    @property
    def label(self) -> str:
        text = f"{self.dataset}, {display(self.model, MODEL_NAMES)}"
        text = text if self.ratio == NATURAL else f"{text}, ratio {self.ratio}"
        return text if self.ranks is None else f"{text} ({self.ranks.n_patients} patients)"


@dataclass
class WhereAnswer:
    """A study's answer to "where does CALF help": its groups and calf analyse's notes."""

    study: str
    metric: str
    alpha: float
    unit: str  # the size unit: "ml" or "voxels"
    groups: list[GroupWhere]
    notes: list[str] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------

def _truthy(value: object) -> bool:
    """A CSV boolean cell (True/False, "true"/"false", 1/0) as a bool."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _count(value: object) -> int:
    """A count cell as an int (NaN or missing: 0)."""
    x = _float(value)
    return 0 if math.isnan(x) else int(x)


def _class_tests(rows) -> list[ClassTest]:
    """The tests of one size class, baselines in the canonical order."""
    out = []
    for baseline in ordered(rows["baseline"].astype(str), LOSS_NAMES):
        row = rows[rows["baseline"].astype(str) == baseline].iloc[0]
        p_holm = _float(row["p_holm"])
        verdict = UNTESTED if math.isnan(p_holm) else str(row["verdict"])
        out.append(ClassTest(display(baseline, LOSS_NAMES), verdict,
                             _float(row["median_diff"]), p_holm))
    return out


def _size_classes(rows) -> list[SizeClass]:
    """A CALF loss's size classes: the tumour-free class first, then by size."""
    classes = []
    for name, mine in rows.groupby(rows["size_class"].astype(str), sort=False):
        first = mine.iloc[0]
        classes.append(SizeClass(name, _float(first["class_low"]), _float(first["class_high"]),
                                 str(first["size_unit"]), _count(mine["n_patients"].max()),
                                 _class_tests(mine)))
    return sorted(classes, key=lambda c: (not c.tumour_free, c.low, c.name))


def _slopes(rows) -> list[Slope]:
    """The primary interaction estimate per baseline (no primary row: not estimated)."""
    out = []
    for baseline in ordered(rows["baseline"].astype(str), LOSS_NAMES):
        mine = rows[rows["baseline"].astype(str) == baseline]
        primary = mine[[_truthy(v) for v in mine["primary"]]]
        row = (primary if len(primary) else mine).iloc[0]
        reason = "" if row["reason"] != row["reason"] else str(row["reason"]).strip()
        slope = _float(row["slope_per_doubling"]) if len(primary) else math.nan
        out.append(Slope(display(baseline, LOSS_NAMES),
                         METHOD_NAMES.get(str(row["method"]), str(row["method"])), slope,
                         _float(row["ci_low"]), _float(row["ci_high"]),
                         _float(row["p_value"]), reason if len(primary) else NO_PRIMARY))
    return out


def _rank_stability(rows) -> RankStability | None:
    """The group's rank-stability row (None: none, or no best loss)."""
    if rows.empty or rows.iloc[0]["best"] != rows.iloc[0]["best"]:
        return None
    row = rows.iloc[0]
    return RankStability(display(str(row["best"]), LOSS_NAMES), _float(row["best_share"]),
                         _count(row["resamples"]), _float(row["tau_median"]),
                         _count(row["n_patients"]))


def _robustness(rows) -> Robustness | None:
    """The group's robustness rows in brief (None: none)."""
    if rows.empty:
        return None
    combos = rows[["preset", "metric"]].astype(str).drop_duplicates()
    changes = {}
    for (calf, baseline), part in rows.groupby(["calf_loss", "baseline"], sort=False):
        counts = part["verdict"].astype(str).value_counts()
        if len(counts) > 1:
            changes[(display(str(calf), LOSS_NAMES), display(str(baseline), LOSS_NAMES))] = {
                str(k): int(v) for k, v in counts.items()}
    n = len(rows[["calf_loss", "baseline"]].drop_duplicates())
    return Robustness(len(combos), n, changes)


def _of_group(table, group: tuple):
    return table[(table[_KEYS].astype(str) == list(group)).all(axis=1)]


def _reachable(rows, alpha: float) -> bool:
    """Whether some test of ``rows`` (size-class tests) can reach significance at all."""
    from calf.report.answer import min_attainable_p

    return any(min_attainable_p(_count(n), _count(f)) < alpha
               for n, f in zip(rows["n_patients"], rows["family_size"]))


def _group(group: tuple, sizes, slopes, ranks, robust, alpha: float) -> GroupWhere:
    """One group's answer from the tables' rows (of the metric, but ``robust``'s)."""
    sizes, slopes = _of_group(sizes, group), _of_group(slopes, group)
    losses = ordered(set(sizes["calf_loss"].astype(str)) | set(slopes["calf_loss"].astype(str)),
                     LOSS_NAMES)
    mine = {loss: sizes[sizes["calf_loss"].astype(str) == loss] for loss in losses}
    calf = [CalfWhere(display(loss, LOSS_NAMES), _size_classes(mine[loss]),
                      _slopes(slopes[slopes["calf_loss"].astype(str) == loss]),
                      _reachable(mine[loss], alpha) if len(mine[loss]) else True)
            for loss in losses]
    return GroupWhere(*group, calf=calf, ranks=_rank_stability(_of_group(ranks, group)),
                      robust=_robustness(_of_group(robust, group)))


def read_where(analysis_dir: str | Path, metric: str | None = None,
               study: str | None = None) -> WhereAnswer:
    """The answer of the study whose ``calf analyse`` outputs are in ``analysis_dir`` on
    ``metric`` (default Dice); ``study`` names it (default: analysis.json's, else the
    folder's). A missing or unreadable file raises a CalfError naming it."""
    from calf.report.answer import ANSWER_METRIC, group_order

    folder = Path(analysis_dir)
    metric = metric or ANSWER_METRIC
    record = read_analysis_record(folder)
    tables = [read_table(folder, name, needs) for name, needs in (
        ("size_classes", _SIZE_NEEDS), ("interaction", _SLOPE_NEEDS),
        ("rank_stability", _RANK_NEEDS))]
    sizes, slopes, ranks = (t[t["metric"].astype(str) == metric] for t in tables)
    robust = read_table(folder, "robustness", _ROBUST_NEEDS)
    groups = set()
    for table in (sizes, slopes, ranks):
        groups |= set(table[_KEYS].astype(str).itertuples(index=False, name=None))
    units = [str(u) for u in dict.fromkeys(sizes["size_unit"].dropna())] or ["ml"]
    settings = record.get("settings") or {}
    alpha = float(settings.get("alpha", ALPHA))
    return WhereAnswer(
        study or str(record.get("study") or folder.name), metric, alpha, units[0],
        [_group(g, sizes, slopes, ranks, robust, alpha) for g in sorted(groups, key=group_order)],
        [str(n) for n in record.get("notes") or []])


# -- the words, format-free -------------------------------------------------------------

def _and(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def number(x: float) -> str:
    """``x`` to three significant digits, without an exponent, thousands with commas."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(x)))
    if digits <= 0:
        return f"{round(x, digits):,.0f}"
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


def p_text(p: float) -> str:
    """"= 0.002" or "< 0.001" (follows a "p")."""
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"= {p:.3g}"


def size_words(unit: str) -> str:
    """What a doubling doubles: the tumour volume (ml) or its size in voxels."""
    return "tumour volume" if unit == "ml" else f"tumour size ({unit})"


def class_place(classes: Sequence[SizeClass]) -> str:
    """Where, for a run of consecutive classes: "in Q1 (0.5-8.2 ml)", "in Q2-Q4 (...)"."""
    first, last = classes[0], classes[-1]
    if first.tumour_free:
        return "in the tumour-free patients"
    name = first.name if len(classes) == 1 else f"{first.name}-{last.name}"
    if math.isinf(last.high):
        bounds = f"≥ {number(first.low)}"
    elif first.low <= 0:
        bounds = f"< {number(last.high)}"
    else:
        bounds = f"{number(first.low)}-{number(last.high)}"
    return f"in {name} ({bounds} {first.unit})"


def _detail(test: ClassTest, digits: int) -> str:
    return (f"{test.baseline} (median difference {test.median_diff:+.{digits}f}, Holm p "
            f"{p_text(test.p_holm)})")


def _ties(ties: Sequence[ClassTest], total: int, alone: bool) -> str:
    """The tied baselines: all of them when ``alone``, else the others."""
    if alone:
        return ties[0].baseline if total == 1 else (
            "both baselines" if total == 2 else f"all {total} baselines")
    return _and([t.baseline for t in ties]) if len(ties) <= 2 else f"the other {len(ties)}"


def class_verbs(tests: Sequence[ClassTest], digits: int) -> str:
    """What CALF does in a class: "beats BCE (...), loses to Dice (...) and ties the other
    4"; significant ones with their median difference and Holm's p."""
    by = {v: [t for t in tests if t.verdict == v] for v in (BETTER, WORSE, UNTESTED)}
    ties = [t for t in tests if t.verdict not in by]
    parts = []
    if by[BETTER]:
        parts.append("beats " + _and([_detail(t, digits) for t in by[BETTER]]))
    if by[WORSE]:
        parts.append("loses to " + _and([_detail(t, digits) for t in by[WORSE]]))
    if ties:
        parts.append("ties " + _ties(ties, len(tests), alone=len(ties) == len(tests)))
    if by[UNTESTED]:
        parts.append("has no test against " + _and([t.baseline for t in by[UNTESTED]]))
    return _and(parts)


def _tied(size_class: SizeClass) -> bool:
    return all(t.verdict not in (BETTER, WORSE) for t in size_class.tests)


def _runs(classes: Sequence[SizeClass], digits: int) -> list[tuple[str, list[SizeClass]]]:
    """(verbs, classes) per run of consecutive tumour-bearing classes that say the same
    thing without numbers (all ties); every other class on its own."""
    runs: list[tuple[str, list[SizeClass]]] = []
    for c in classes:
        verbs = class_verbs(c.tests, digits)
        last = runs[-1] if runs else None
        if (last and _tied(c) and not c.tumour_free and last[0] == verbs
                and not last[1][-1].tumour_free):
            last[1].append(c)
        else:
            runs.append((verbs, [c]))
    return runs


def class_sentence(where: CalfWhere, digits: int) -> str:
    """One sentence: the significant classes first (by size), then where it ties."""
    classes = [c for c in where.classes if c.tests]
    if not classes:
        return f"{where.calf_loss}: no size-class tests."
    runs = _runs(classes, digits)
    ties = [r for r in runs if all(_tied(c) for c in r[1])]
    parts = [f"{verbs} {class_place(run)}" for verbs, run in runs if not all(map(_tied, run))]
    merged: dict[str, list[str]] = {}
    for verbs, run in ties:
        merged.setdefault(verbs, []).append(class_place(run))
    caveat = "" if where.reachable or parts else (
        f" (with at most {max(c.n_patients for c in classes)} patients per class no class "
        "test can reach significance after Holm's correction)")
    if not parts and len(merged) == 1 and len(classes) > 1:
        return f"{where.calf_loss} {next(iter(merged))} in every size class{caveat}."
    parts += [f"{verbs} {' and '.join(places)}" for verbs, places in merged.items()]
    return f"{where.calf_loss} " + "; ".join(parts) + caveat + "."


def _interval(s: Slope, digits: int) -> str:
    ci = "" if math.isnan(s.ci_low) or math.isnan(s.ci_high) else (
        f"95% CI {s.ci_low:.{digits}f} to {s.ci_high:.{digits}f}, ")
    p = "" if math.isnan(s.p_value) else f"p {p_text(s.p_value)}, "
    return f"{ci}{p}{s.method}"


def _baselines(slopes: Sequence[Slope], every: bool) -> str:
    """Named when one or two; else "any of the k baselines" / "the other k baselines"."""
    if len(slopes) <= 2:
        return _and([s.baseline for s in slopes])
    return f"{'any of the' if every else 'the other'} {len(slopes)} baselines"


def slope_sentences(where: CalfWhere, metric: str, unit: str, alpha: float,
                    digits: int) -> list[str]:
    """The change of CALF's advantage per doubling of the size, per baseline."""
    advantage, doubling = f"{where.calf_loss}'s {metric} advantage", size_words(unit)
    done = [s for s in where.slopes if not math.isnan(s.slope)]
    full = done if len(where.slopes) <= FULL_SLOPES else [s for s in done if s.p_value < alpha]
    rest = [s for s in done if s not in full]
    out = []
    if full:
        first, *more = full
        out.append(f"{advantage} over {first.baseline} changes by {first.slope:+.{digits}f} "
                   f"per doubling of {doubling} ({_interval(first, digits)})" + "".join(
                       f"; over {s.baseline} by {s.slope:+.{digits}f} ({_interval(s, digits)})"
                       for s in more) + ".")
    if rest:
        ps = [s.p_value for s in rest if not math.isnan(s.p_value)]
        lowest = f" (p ≥ {min(ps):.3g})" if ps else ""
        out.append(f"{advantage} does not change significantly with {doubling} over "
                   f"{_baselines(rest, every=not full)}{lowest}.")
    failed: dict[str, list[str]] = {}
    for s in where.slopes:
        if math.isnan(s.slope):
            reason = _NO_SLOPE.sub("", s.reason).rstrip(".")
            failed.setdefault(reason, []).append(s.baseline)
    out += [f"The change of {advantage} over {_and(names)} with {doubling} could not be "
            f"estimated{': ' + reason if reason else ''}." for reason, names in failed.items()]
    return out


def rank_sentence(ranks: RankStability | None, metric: str) -> str:
    """How often the best loss stays best in the bootstrap resamples of the patients."""
    if ranks is None:
        return ""
    if math.isnan(ranks.best_share) or not ranks.resamples:
        return f"The best loss by mean {metric} is {ranks.best} (no bootstrap resamples)."
    resamples = f"{ranks.resamples:,} bootstrap resamples of the patients"
    share = ranks.best_share
    if share >= 1:
        where = f"all {resamples}"
    else:
        percent = f"{share:.0%}"
        percent = {"100%": "over 99%", "0%": "under 1%" if share > 0 else "0%"}.get(
            percent, percent)
        where = f"{percent} of {resamples}"
    tau = "" if math.isnan(ranks.tau_median) else (
        f" (Kendall's tau median {ranks.tau_median:.{TAU_DIGITS}f})")
    return f"The best loss by mean {metric}, {ranks.best}, stays best in {where}{tau}."


def robustness_sentence(robust: Robustness | None) -> str:
    """Whether the group's paired verdicts hold under every preset and metric; with more
    than ``FULL_CHANGES`` that do not, their number and the first ones."""
    if robust is None or not robust.n_comparisons:
        return ""
    grid = f"{robust.n_combinations} empty-mask preset and metric combinations"
    if not robust.changes:
        return f"Every paired verdict of the group holds under all {grid}."
    parts = []
    for (calf, baseline), counts in list(robust.changes.items())[:FULL_CHANGES]:
        order = [v for v in (BETTER, NO_DIFFERENCE, WORSE) if v in counts]
        said = _and([f"{counts[v]} {v}" for v in order])
        parts.append(f"{calf} against {baseline} ({said})")
    n = len(robust.changes)
    if n <= FULL_CHANGES:
        return (f"The verdict depends on the convention or metric for {_and(parts)} of the "
                f"{grid} (verdict_changes.csv).")
    return (f"The verdicts of {n} of the {robust.n_comparisons} comparisons depend on the "
            f"convention or metric over the {grid}, e.g. {_and(parts)} "
            "(verdict_changes.csv).")


def group_paragraph(answer: WhereAnswer, group: GroupWhere) -> str:
    """The group's paragraph (without its label): per CALF loss the size classes and the
    slopes, then the rank stability."""
    metric = display(answer.metric, METRIC_NAMES)
    digits = METRIC_DECIMALS.get(answer.metric, 3)
    sentences = []
    for where in group.calf:
        sentences.append(class_sentence(where, digits))
        sentences += slope_sentences(where, metric, answer.unit, answer.alpha, digits)
    sentences.append(rank_sentence(group.ranks, metric))
    sentences.append(robustness_sentence(group.robust))
    return " ".join(s for s in sentences if s)


def where_lead(answer: WhereAnswer) -> str:
    """What the paragraphs say, and how it was tested."""
    metric = display(answer.metric, METRIC_NAMES)
    if not answer.groups:
        return f"No size-class results on {metric}: calf analyse found nothing to compare."
    doubling = size_words(answer.unit)
    return (f"Per dataset, model and filter ratio, on {metric}: CALF against each baseline "
            f"within each class of {doubling} (paired Wilcoxon tests over patients, Holm-"
            f"corrected over the group's classes and baselines, alpha {answer.alpha:g}); the "
            f"change of CALF's advantage per doubling of {doubling} (a mixed model, or "
            "Theil-Sen where its assumptions fail); and how often the best loss stays best "
            "when the patients are resampled.")


def paragraphs(answer: WhereAnswer) -> list[tuple[str, str]]:
    """(label, paragraph) per group."""
    return [(g.label, group_paragraph(answer, g)) for g in answer.groups]


# -- Markdown and reStructuredText ------------------------------------------------------

def where_markdown(answer: WhereAnswer) -> str:
    """The lead, one paragraph per group (its label in bold), calf analyse's notes in a
    collapsed block (no heading: the caller writes it)."""
    lines = [markdown_escape(where_lead(answer)), ""]
    lines += [f"**{markdown_escape(label)}**: {markdown_escape(text)}\n"
              for label, text in paragraphs(answer)]
    if answer.notes:
        lines += [f"<details><summary>{NOTES_TITLE} ({len(answer.notes)})</summary>", ""]
        lines += [f"- {markdown_escape(n)}" for n in answer.notes] + ["", "</details>", ""]
    return "\n".join(lines)


def where_rst(answer: WhereAnswer) -> list[str]:
    """The same as reStructuredText lines (no heading: the caller writes it)."""
    from calf.report.answer import rst_escape

    lines = [rst_escape(where_lead(answer)), ""]
    for label, text in paragraphs(answer):
        lines += [f"**{rst_escape(label)}**: {rst_escape(text)}", ""]
    if answer.notes:
        lines += [f"{NOTES_TITLE}:", ""] + [f"- {rst_escape(n)}" for n in answer.notes] + [""]
    return lines


def read_wheres(analysis_root: str | Path | None,
                studies: Sequence[str]) -> dict[str, WhereAnswer]:
    """The answer of each study that has ``analysis_root/<study>/analysis.json`` (none
    without ``analysis_root``)."""
    if analysis_root is None:
        return {}
    root = Path(analysis_root)
    return {study: read_where(root / study, study=study) for study in studies
            if (root / study / ANALYSIS_JSON).is_file()}
