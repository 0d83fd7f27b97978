"""``calf report``: comparison tables, figures and the report's README.

Five actions; all but ``cost`` read the per-case metric CSVs they are given (paths under
``--metrics-root``, laid out as the evaluate step writes them):

- ``tables``: a study's metrics per loss, CSV/Markdown/LaTeX/HTML, with significance markers
  from ``calf stats``'s paired.csv;
- ``paper``: the authors' numbers beside the suite's batch-pooled Dice of pooled-protocol runs;
- ``figures``: a study's figures (Dice, critical difference, imbalance, branch shares,
  overlays; with ``--analysis-dir`` also CALF's advantage by tumour size and by imbalance,
  the rank blob plot and the significance map), PNG and SVG;
- ``cost``: what a study's training runs cost per dataset, model and loss (device-seconds
  per epoch, device-hours, peak memory, energy, CALF's overhead over BCE), CSV/Markdown/HTML,
  from the run folders' ``run.json`` (``calf.report.tables.cost``);
- ``readme``: ``results/report/README.md``, each study's answer first, then linking them
  all; with ``--front-page`` and ``--description`` also the HTML report's front page (the
  answers in reStructuredText, then the description), both files or neither; with
  ``--analysis-root`` each answer also says where CALF helps (calf analyse's tables).

Every action writes all its files or none. An existing file is replaced only with
``--force``; ``figures`` replaces its ``--out-dir`` whole when the folder holds figures it
wrote (``FIGURES_MARKER``), else only with ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from calf.commands._metrics import add_metrics_arguments
from calf.defaults import ALPHA
from calf.errors import CalfError
from calf.evaluate.companion import read_companion
from calf.naming import CALF_LOSSES

# the file every figures folder holds: a folder with it was written by calf report figures
FIGURES_MARKER = "dice.png"
# the tables that the figures drawn from calf analyse's tables (--analysis-dir) read
ANALYSIS_TABLES = ("patient_advantage", "imbalance", "rank_counts", "rank_stability",
                   "significance_map")


def _metrics_arguments(parser: argparse.ArgumentParser, study: bool = True) -> None:
    add_metrics_arguments(parser, "the study the CSVs belong to" if study else None, "*")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    tables = actions.add_parser("tables",
                                help="a study's metrics per loss (CSV, Markdown, LaTeX, HTML)")
    _metrics_arguments(tables)
    tables.add_argument("--paired", default=None,
                        help="paired.csv of calf stats (significance markers)")
    tables.add_argument("--out-prefix", required=True, help="writes PREFIX.csv, .md, .tex, .html")
    tables.add_argument("--calf-loss", action="append", default=None,
                        help="a CALF loss whose significant differences are marked (repeatable)")
    tables.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"significance level (default {ALPHA:g})")
    tables.add_argument("--metric", action="append", default=None,
                        help="a metric to show, in this order (repeatable; default: every "
                        "global metric with a value, the lesion metrics on request)")

    paper = actions.add_parser("paper", help="the authors' numbers beside the suite's")
    _metrics_arguments(paper, study=False)
    paper.add_argument("--out-prefix", required=True, help="writes PREFIX.csv, .md, .tex, .html")

    figures = actions.add_parser("figures", help="a study's figures (PNG and SVG)")
    _metrics_arguments(figures)
    figures.add_argument("--runs-root", required=True,
                         help="root of the training runs (results/runs)")
    figures.add_argument("--stats-dir", required=True, help="the study's calf stats output folder")
    figures.add_argument("--profile", action="append", default=[], metavar="JSON",
                         help="a training set's imbalance profile (repeatable)")
    figures.add_argument("--analysis-dir", default=None, metavar="DIR",
                         help="the study's calf analyse output folder: also draws its four "
                         "figures (README, 'Analysis: where CALF helps')")
    figures.add_argument("--out-dir", required=True, help="folder for the figures")

    cost = actions.add_parser("cost", help="what a study's training runs cost per loss "
                              "(CSV, Markdown, HTML)")
    cost.add_argument("--runs-root", required=True, help="root of the training runs (results/runs)")
    cost.add_argument("--study", required=True, help="the study the runs belong to")
    cost.add_argument("--out-prefix", required=True, help="writes PREFIX.csv, .md, .html")
    cost.add_argument("--calf-loss", action="append", default=None,
                      help="a CALF loss whose overhead over BCE is shown (repeatable; "
                      "default: every CALF loss)")
    cost.add_argument("runs", nargs="*", metavar="RUN_DIR", help="training run folders")

    readme = actions.add_parser("readme",
                                help="results/report/README.md linking every table and figure")
    readme.add_argument("--report-dir", required=True, help="the report folder (results/report)")
    readme.add_argument("--stats-root", required=True,
                        help="root of calf stats outputs (results/stats)")
    readme.add_argument("--study", action="append", required=True, metavar="STUDY[:DATASET,...]",
                        help="a study and its dataset names (overlay grids), "
                        "e.g. demo:sparse,bulky")
    readme.add_argument("--out", required=True, help="the README to write")
    readme.add_argument("--front-page", default=None, metavar="OUT.rst",
                        help="also write the HTML report's front page: every study's answer "
                        "in reStructuredText, then --description (give both or neither)")
    readme.add_argument("--description", default=None, metavar="PATH.rst",
                        help="the workflow description appended unchanged to --front-page")
    readme.add_argument("--analysis-root", default=None, metavar="DIR",
                        help="root of calf analyse outputs (results/analysis): a paragraph "
                        "per study on where CALF helps")
    readme.add_argument("--cost", action="store_true",
                        help="also show each study's cost table (STUDY/cost.md, written by "
                        "calf report cost)")
    for action in (tables, paper, figures, cost, readme):
        action.add_argument("--force", action="store_true",
                            help="replace existing output files (figures: an --out-dir "
                            f"without {FIGURES_MARKER})")


def _cases(args: argparse.Namespace):
    from calf.stats.collect import load_case_metrics

    cases = load_case_metrics(args.metrics, args.metrics_root)
    others = sorted(set(cases["study"]) - {args.study})
    if others:
        raise CalfError(f"--study {args.study}: metrics files of study {others[0]!r} given")
    return cases


def _tables(args: argparse.Namespace) -> list[Path]:
    import pandas as pd

    from calf.report.tables import write_summary_tables

    paired = None
    if args.paired:
        if not Path(args.paired).is_file():
            raise CalfError(f"--paired {args.paired}: no such file")
        paired = pd.read_csv(args.paired, dtype={"ratio": str})
    calf_losses = args.calf_loss or list(CALF_LOSSES)
    cases = _cases(args)  # checks every path first
    protocols = {str(path): read_companion(path) for path in args.metrics}
    return write_summary_tables(cases, paired, Path(args.out_prefix),
                                calf_losses=calf_losses, alpha=args.alpha, protocols=protocols,
                                metrics=args.metric, force=args.force)


def pooled_runs(metrics: list[str], root: str, records: list | None = None):
    """study, model, loss, ratio, seed, batch_pooled_dice of each run (its companion JSON);
    each companion is also appended to ``records`` when given."""
    import pandas as pd

    from calf.evaluate.companion import companion_path
    from calf.evaluate.pooled import ORDER, POOLED_SUMMARY_KEY
    from calf.layout import RunKey

    rows = []
    for path in metrics:
        ident = RunKey.from_path(path, ".csv", root).as_dict()
        record = read_companion(path)
        if records is not None:
            records.append(record)
        where = companion_path(path)
        try:
            value = record["summary"][POOLED_SUMMARY_KEY]
        except (KeyError, TypeError):
            raise CalfError(f"{where}: no summary.{POOLED_SUMMARY_KEY}") from None
        order = (record.get("batch_pooled_dice") or {}).get("order")
        if order != ORDER:
            # written before the authors' sampler order (format 1: consecutive slices)
            raise CalfError(f"{where}: batch-pooled Dice drawn in order {order!r}, not "
                            f"{ORDER!r}; re-run its evaluation")
        rows.append({k: ident[k] for k in ("study", "model", "loss", "ratio", "seed")}
                    | {"batch_pooled_dice": float("nan") if value is None else float(value)})
    columns = ["study", "model", "loss", "ratio", "seed", "batch_pooled_dice"]
    return pd.DataFrame(rows, columns=columns)


def _paper(args: argparse.Namespace) -> list[Path]:
    from calf.protocol import protocol_summary
    from calf.report.tables import write_paper_table

    records: list = []
    runs = pooled_runs(args.metrics, args.metrics_root, records)
    protocol = protocol_summary(records) if records else None
    return write_paper_table(runs, Path(args.out_prefix), protocol, force=args.force)


def _read_stats(stats_dir: Path):
    import pandas as pd

    frames = {}
    for name in ("ranks", "nemenyi", "friedman"):
        path = stats_dir / f"{name}.csv"
        if not path.is_file():
            raise CalfError(f"{path}: no such file (run calf stats first)")
        frames[name] = pd.read_csv(path, dtype={"ratio": str})
    return frames


def _read_analysis(analysis_dir: Path):
    """calf analyse's tables that the analysis figures read, by name; CalfError naming the
    first file that is missing or unreadable."""
    from calf.analysis.run import read_table

    return {name: read_table(analysis_dir, name) for name in ANALYSIS_TABLES}


def _analysis_figures(tables: dict, tmp: Path) -> list[Path]:
    """The figures of calf analyse's tables, into the staging folder ``tmp``."""
    from calf.report.figures import (
        plot_advantage_volume,
        plot_imbalance_advantage,
        plot_rank_blobs,
        plot_significance_map,
    )

    return [
        *plot_advantage_volume(tables["patient_advantage"], tmp / "advantage_volume"),
        *plot_imbalance_advantage(tables["imbalance"], tmp / "imbalance_advantage"),
        *plot_rank_blobs(tables["rank_counts"], tables["rank_stability"], tmp / "rank_blobs"),
        *plot_significance_map(tables["significance_map"], tables["rank_stability"],
                               tmp / "significance_map", rank_counts=tables["rank_counts"]),
    ]


def _figures(args: argparse.Namespace) -> list[Path]:
    from calf._fs import atomic_dir, check_replaceable
    from calf.evaluate.pipeline import scoring_summary
    from calf.layout import RunKey
    from calf.report.figures import (
        plot_branch_shares,
        plot_critical_difference,
        plot_dice,
        plot_imbalance,
        plot_overlays,
    )

    cases = _cases(args)
    scoring = scoring_summary([read_companion(path) for path in args.metrics])
    stats = _read_stats(Path(args.stats_dir))
    analysis = _read_analysis(Path(args.analysis_dir)) if args.analysis_dir else None
    run_dirs = [RunKey.from_path(path, ".csv", args.metrics_root).run_dir(args.runs_root)
                for path in args.metrics]
    out_dir = Path(args.out_dir)
    try:
        check_replaceable(out_dir, FIGURES_MARKER, args.force)
    except CalfError as err:
        raise CalfError(f"--out-dir {err}") from None
    # every figure goes into a staging folder that replaces --out-dir only when all are drawn
    with atomic_dir(out_dir, owned_by=FIGURES_MARKER, force=args.force) as tmp:
        written = [
            *plot_dice(cases, tmp / "dice", "dice", scoring),
            *plot_dice(cases, tmp / "hd95", "hd95", scoring),
            *plot_critical_difference(stats["ranks"], stats["nemenyi"], stats["friedman"],
                                      tmp / "critical_difference"),
            *plot_imbalance(args.profile, tmp / "imbalance"),
            *plot_branch_shares(run_dirs, tmp / "branches", runs_root=args.runs_root),
            *plot_overlays(args.metrics, tmp, metrics_root=args.metrics_root),
        ]
        if analysis is not None:
            written += _analysis_figures(analysis, tmp)
    return [out_dir / Path(path).name for path in written]


def _cost(args: argparse.Namespace) -> list[Path]:
    from calf.report.tables import collect_costs, write_cost_table

    runs = collect_costs(args.runs, args.runs_root)  # checks every run first
    others = sorted(set(runs["study"]) - {args.study})
    if others:
        raise CalfError(f"--study {args.study}: run folders of study {others[0]!r} given")
    return write_cost_table(runs, Path(args.out_prefix),
                            calf_losses=args.calf_loss or list(CALF_LOSSES), force=args.force)


def _readme(args: argparse.Namespace) -> list[Path]:
    from calf.report.readme import write_readme

    studies = {}
    for item in args.study:
        name, _, datasets = item.partition(":")
        if not name:
            raise CalfError(f"--study {item!r}: expected STUDY[:DATASET,...]")
        studies[name] = [d for d in datasets.split(",") if d]
    # analysis_root only when given: write_readme without it keeps working
    extra = {} if args.analysis_root is None else {"analysis_root": args.analysis_root}
    return write_readme(args.report_dir, args.stats_root, studies, args.out,
                        front_page=args.front_page, description=args.description,
                        cost=args.cost, force=args.force, **extra)


def run(args: argparse.Namespace) -> int:
    action = {"tables": _tables, "paper": _paper, "figures": _figures, "cost": _cost,
              "readme": _readme}[args.action]
    if args.action in ("tables", "figures") and not args.metrics:
        raise CalfError("no per-case metrics files given")
    written = action(args)
    print(f"calf report {args.action}: wrote {len(written)} file(s)"
          + (f", e.g. {written[0]}" if written else ""))
    return 0
