"""The summary table of a study: every loss's metrics per dataset, model and filter ratio.

The patient is the unit, as in the statistics: each patient's value is its mean over
modalities, then exams, then seeds (``calf.stats.collect.patient_means``; NaN values are
left out of those means metric by metric), then every (dataset, model, ratio, loss,
metric) is summarised over patients: n (patients), mean, sd (ddof 1), median, q1, q3
(linear interpolation, numpy's default). The best value of each shown column is bold
(highest; lowest for HD95), compared at the precision shown so that equal-looking values
are bold together.
Baselines are listed first, the CALF losses last; significance markers come from
``calf.report.tables.markers``. The Markdown, LaTeX and HTML tables show what a reader needs
first (``SHOWN_METRICS``: Dice, HD95, NSD, those with values) unless metrics are asked for;
the CSV keeps every metric with a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.layout import ratio_sort_key, ratio_text
from calf.naming import LOSS_NAMES, METRIC_NAMES, MODEL_NAMES, display, ordered
from calf.protocol import protocol_summary
from calf.report.tables.document import (
    METRIC_DECIMALS,
    MISSING,
    Block,
    Cell,
    Column,
    Document,
    fmt,
    ratio_title,
)
from calf.report.tables.io import output_paths, publish
from calf.report.tables.markers import check_paired, legend, markers_for, significant_vs
from calf.report.tables.render import to_html, to_latex, to_markdown
from calf.stats.collect import (
    GROUP_KEYS,
    HIGHER_IS_BETTER,
    METRIC_COLUMNS,
    ROW_KEYS,
    UNIT_KEYS,
    indexed_rows,
    patient_means,
)

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".md", ".tex", ".html")
# the metrics the tables show by default (those with a value), in this order
SHOWN_METRICS = ("dice", "hd95", "nsd")
BASELINE_ORDER = ("bce", "dice", "iou", "tversky", "focal", "combo")
CSV_COLUMNS = (*GROUP_KEYS, "loss", "metric", "n", "mean", "sd", "median", "q1", "q3", "best",
               "best_median", "significant_vs")


def summarise_cases(cases: "pd.DataFrame") -> "pd.DataFrame":
    """One row per (group, loss, metric): n, mean, sd, median, q1, q3 over patient means."""
    keys = [*GROUP_KEYS, "loss", *UNIT_KEYS]
    rows = indexed_rows(cases, METRIC_COLUMNS, before=[*GROUP_KEYS, "loss"])
    per_patient = patient_means(rows, by=[*GROUP_KEYS, "loss"])
    long = per_patient.reset_index().melt(id_vars=keys, value_vars=list(METRIC_COLUMNS),
                                          var_name="metric")
    by_cell = long.groupby([*GROUP_KEYS, "loss", "metric"], sort=False)["value"]
    stats = by_cell.agg(n="count", mean="mean", sd="std", median="median")
    stats["q1"], stats["q3"] = by_cell.quantile(0.25), by_cell.quantile(0.75)
    stats = stats.reset_index()
    stats["n"] = stats["n"].astype(int)
    return stats


def _mark_best(stats: "pd.DataFrame", column: str) -> "pd.Series":
    """True where ``column`` equals its group's best value at the precision shown (ties:
    all), per (group, metric); highest is best but for HD95."""
    shown = stats[column].copy()
    for metric, decimals in METRIC_DECIMALS.items():
        rows = stats["metric"] == metric
        shown[rows] = shown[rows].round(decimals)
    # lowest-is-best metrics negated, so that the best is always the maximum
    signed = shown.where(stats["metric"].map(HIGHER_IS_BETTER), -shown)
    best = signed.groupby([stats[k] for k in (*GROUP_KEYS, "metric")]).transform("max")
    return signed.eq(best) & signed.notna()


def _check_cases(cases: "pd.DataFrame") -> "pd.DataFrame":
    needed = [*GROUP_KEYS, "loss", *ROW_KEYS, *METRIC_COLUMNS]
    missing = [c for c in needed if c not in cases.columns]
    if missing:
        raise CalfError(f"per-case metrics: missing column(s) {', '.join(missing)}")
    if cases.empty:
        raise CalfError("per-case metrics: no rows to summarise")
    studies = sorted(set(cases["study"].astype(str)))
    if len(studies) > 1:
        raise CalfError(f"per-case metrics hold several studies ({', '.join(studies)}); "
                        "write one summary table per study")
    cases = cases.copy()
    for key in (*GROUP_KEYS, "loss", *UNIT_KEYS, "case_id", "modality"):
        cases[key] = cases[key].astype(str)
    cases["ratio"] = cases["ratio"].map(ratio_text)
    return cases


def _group_order(group: tuple) -> tuple:
    """Blocks by dataset, model (U-Net, DeepLabV3, FPN, then others), ratio."""
    _, dataset, model, ratio = group
    known = list(MODEL_NAMES)
    return (dataset, known.index(model) if model in known else len(known), model,
            ratio_sort_key(ratio))


def _block(stats: "pd.DataFrame", group: tuple, losses: list[str], notes: list[str],
           metrics: Sequence[str]) -> Block:
    """One table: ``stats`` indexed by (loss, metric) for this group, with ``marker`` texts."""
    _, dataset, model, ratio = group
    columns = [Column("Loss", numeric=False)]
    for metric in metrics:
        name = display(metric, METRIC_NAMES)
        columns += [Column("mean ± sd", name), Column("median [q1, q3]", name)]
    rows = []
    for loss in losses:
        row = [Cell(display(loss, LOSS_NAMES))]
        for metric in metrics:
            s, d = stats.loc[(loss, metric)], METRIC_DECIMALS[metric]
            if s["n"] == 0:
                row += [Cell(MISSING), Cell(MISSING)]
                continue
            row += [Cell(f"{fmt(s['mean'], d)} ± {fmt(s['sd'], d)}", bool(s["best"]),
                         s["marker"]),
                    Cell(f"{fmt(s['median'], d)} [{fmt(s['q1'], d)}, {fmt(s['q3'], d)}]",
                         bool(s["best_median"]), s["marker"])]
        rows.append(row)
    n_patients = int(stats["n"].max())
    title = (f"{dataset}, {display(model, MODEL_NAMES)}, {ratio_title(ratio)} "
             f"({n_patients} patients)")
    return Block(title, columns, rows, notes)


def _protocol_notes(cases: "pd.DataFrame", group: tuple,
                    protocols: "Mapping[str, Mapping]") -> list[str]:
    """The protocol switches and the scoring of the runs behind one block, two sentences."""
    from calf.evaluate.pipeline import scoring_summary

    mine = cases[(cases[list(GROUP_KEYS)] == list(group)).all(axis=1)]
    records = [protocols[str(source)] for source in sorted(set(mine["source"]))]
    return [protocol_summary(records), scoring_summary(records)]


def _table_metrics(cases: "pd.DataFrame", metrics: Sequence[str] | None) -> list[str]:
    """The metrics a table shows: those asked for (checked), else those of
    ``SHOWN_METRICS`` with a value (Dice when none has)."""
    if metrics is None:
        shown = [m for m in SHOWN_METRICS if cases[m].notna().any()]
        return shown or ["dice"]
    for metric in metrics:
        if metric not in METRIC_COLUMNS:
            raise CalfError(f"--metric {metric!r}: unknown metric, expected one of "
                            f"{', '.join(METRIC_COLUMNS)}")
    return list(dict.fromkeys(metrics))


def write_summary_tables(cases: "pd.DataFrame", paired: "pd.DataFrame | None",
                         out_prefix: str | Path, *, calf_losses: Sequence[str],
                         alpha: float,
                         protocols: "Mapping[str, Mapping] | None" = None,
                         metrics: Sequence[str] | None = None,
                         force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.csv/.md/.tex/.html``; returns their paths.

    ``cases``: one study's per-case metrics (``calf.stats.collect.load_case_metrics``).
    ``paired``: the paired statistics (``paired.csv``) of the same cases, or None for no
    markers. ``calf_losses``: the CALF variants (listed last, with markers); ``alpha``: the
    level the statistics used (checked against ``p_holm`` where the frame has it).
    ``protocols``: each metrics file's companion JSON (by the path in ``cases["source"]``),
    whose ``protocol`` switches and scoring (space, conventions preset, units) become
    notes under each block (``calf.protocol``, ``calf.evaluate.pipeline.scoring_summary``).
    ``metrics``: the metrics the Markdown, LaTeX and HTML tables show, in this order
    (default: those of ``SHOWN_METRICS``, Dice, HD95 and NSD, with at least one value).
    The CSV is long and numeric, every metric with at least one value (and those asked
    for) in ``METRIC_COLUMNS`` order: group columns, loss, metric, n (patients), mean, sd,
    median, q1, q3, best (the mean's column), best_median, significant_vs (';'-joined CALF
    losses). Existing files are replaced only with ``force``.
    """
    import pandas as pd

    paths = output_paths(out_prefix, SUFFIXES)
    cases = _check_cases(cases)
    metrics = _table_metrics(cases, metrics)
    csv_metrics = [m for m in METRIC_COLUMNS if m in metrics or cases[m].notna().any()]
    calf_losses = list(calf_losses)
    marks = markers_for(calf_losses)
    stats = summarise_cases(cases)
    if paired is not None:
        present = set(stats[[*GROUP_KEYS, "loss"]].itertuples(index=False, name=None))
        paired = check_paired(paired, present, calf_losses, alpha)
        stats = stats.join(significant_vs(paired, calf_losses), on=[*GROUP_KEYS, "loss", "metric"])
    else:
        stats["significant_vs"] = None
    stats["significant_vs"] = stats["significant_vs"].fillna("").astype(str)
    stats["marker"] = stats["significant_vs"].map(
        lambda v: "".join(marks[c] for c in v.split(";") if c))
    stats["best"] = _mark_best(stats, "mean")
    stats["best_median"] = _mark_best(stats, "median")

    groups = sorted(set(stats[list(GROUP_KEYS)].itertuples(index=False, name=None)),
                    key=_group_order)
    blocks, frames = [], []
    for group in groups:
        mine = stats[(stats[list(GROUP_KEYS)] == list(group)).all(axis=1)]
        names = set(mine["loss"])
        losses = ordered(names - set(calf_losses), BASELINE_ORDER) + [
            c for c in calf_losses if c in names]
        mine = mine.set_index(["loss", "metric"]).loc[
            [(loss, m) for loss in losses for m in csv_metrics]]
        tests = None
        if paired is not None:
            tests = paired[(paired[list(GROUP_KEYS)] == list(group)).all(axis=1)]
        notes = legend(tests, [c for c in calf_losses if c in names], marks, alpha)
        if protocols is not None:
            notes += _protocol_notes(cases, group, protocols)
        blocks.append(_block(mine, group, losses, notes, metrics))
        frames.append(mine.reset_index())

    table = pd.concat(frames, ignore_index=True)[list(CSV_COLUMNS)]
    study = groups[0][0]
    doc = Document(
        f"Summary of study {study}",
        [f"Per-case metrics of study {study}, with the patient as the unit: each patient's "
         "mean over modalities, then exams, then seeds first, then mean ± sd and median "
         "[q1, q3] over patients, per dataset, model and filter ratio. NaN values are left "
         "out metric by metric (the number of patients per metric is in the CSV's n). "
         "Distances (HD95) in mm; the notes under each table say where the cases were "
         "scored and which conventions preset filled undefined values."],
        blocks)
    return publish(dict(zip(paths, [table.to_csv(index=False), to_markdown(doc),
                                    to_latex(doc), to_html(doc)], strict=True)), force=force)
