"""``calf analyse``: where CALF helps, by tumour size and training-set imbalance, how stable
the ranking is and how robust the verdict (``calf.analysis``; README, "Analysis").

``calf analyse --metrics-root DIR --study NAME --out-dir DIR [--profiles-root DIR --profile
JSON ...] [--calf-loss L ...] [--metric M ...] [--size-bins N | --size-bins E1,E2,...]
[--robustness-metric M ...] [--preset P ...] [--alpha A] [--missing error|drop]
[--zero-method Z] [--resamples N] [--rank-resamples N] [--seed S] [--force] METRICS_CSV...``
writes the tables of ``calf.analysis.run.TABLE_SOURCES`` as CSVs and ``analysis.json`` into
``--out-dir``, replaced whole: a folder without a previous run's ``analysis.json`` is refused
unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys

from calf.commands._metrics import add_metrics_arguments
from calf.defaults import ALPHA, SEED
from calf.errors import CalfError
from calf.naming import CALF_LOSSES
from calf.stats.collect import METRIC_COLUMNS
from calf.stats.paired import ZERO_METHODS
from calf.stats.run import MISSING, RESAMPLES

SIZE_BINS_HELP = ("size classes of the tumour-bearing patients: a number of quantile classes "
                  "(default 4: quartiles) or ascending edges in ml, comma-separated")


def size_bins(text: str) -> int | tuple[float, ...]:
    """``--size-bins``: ``4`` (quantile classes) or ``1.5,10,40`` (edges)."""
    try:
        if "," not in text and "." not in text:
            return int(text)
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number or "
                                         "comma-separated numbers") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calf.analysis.run import DEFAULT_METRICS, DEFAULT_SIZE_BINS, ROBUSTNESS_METRICS
    from calf.evaluate.conventions import PRESET_NAMES

    add_metrics_arguments(parser, "the study to analyse")
    parser.add_argument("--out-dir", required=True, metavar="DIR",
                        help="folder for the tables and analysis.json (new, empty, or a "
                             "previous run's; else --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out-dir even when it holds no analysis.json")
    parser.add_argument("--profiles-root", metavar="DIR",
                        help="the directory the --profile paths are relative to")
    parser.add_argument("--profile", action="append", default=[], metavar="JSON",
                        help="a training set's imbalance profile (repeatable)")
    parser.add_argument("--calf-loss", action="append", default=None, metavar="LOSS",
                        help=f"loss compared with every other (default: {', '.join(CALF_LOSSES)})")
    parser.add_argument("--metric", action="append", default=None, choices=METRIC_COLUMNS,
                        help="metric of the size-class tests, interaction model and ranking "
                             f"(repeatable; default {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--size-bins", type=size_bins, default=DEFAULT_SIZE_BINS,
                        help=SIZE_BINS_HELP)
    parser.add_argument("--robustness-metric", action="append", default=None,
                        choices=METRIC_COLUMNS,
                        help=f"metric of the robustness grid (default "
                             f"{', '.join(ROBUSTNESS_METRICS)})")
    parser.add_argument("--preset", action="append", default=None, choices=PRESET_NAMES,
                        help="empty-mask preset of the robustness grid (default all)")
    parser.add_argument("--alpha", type=float, default=ALPHA)
    parser.add_argument("--missing", choices=MISSING, default=MISSING[0])
    parser.add_argument("--zero-method", choices=ZERO_METHODS, default=ZERO_METHODS[0])
    parser.add_argument("--resamples", type=int, default=RESAMPLES,
                        help="bootstrap resamples of each median CI")
    parser.add_argument("--rank-resamples", type=int, default=2000,
                        help="bootstrap resamples of the patients for the ranking")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes for the interaction models (default 1; the "
                             "tables are the same for any number)")


def run(args: argparse.Namespace) -> int:
    from calf.analysis.run import (
        DEFAULT_METRICS,
        ROBUSTNESS_METRICS,
        check_out_dir,
        compute_analysis,
        write_analysis,
    )
    from calf.evaluate.conventions import PRESET_NAMES
    from calf.stats.collect import load_case_metrics

    if args.profile and not args.profiles_root:
        raise CalfError("--profile needs --profiles-root")
    check_out_dir(args.out_dir, force=args.force)  # before the work, not after
    cases = load_case_metrics(args.metrics, args.metrics_root)
    analysis = compute_analysis(
        cases, study=args.study, profiles=args.profile, profiles_root=args.profiles_root,
        calf_losses=args.calf_loss or CALF_LOSSES, metrics=args.metric or DEFAULT_METRICS,
        size_bins=args.size_bins,
        robustness_metrics=args.robustness_metric or ROBUSTNESS_METRICS,
        presets=args.preset or PRESET_NAMES, alpha=args.alpha, missing=args.missing,
        zero_method=args.zero_method, resamples=args.resamples,
        rank_resamples=args.rank_resamples, seed=args.seed, jobs=args.jobs)
    write_analysis(analysis, args.out_dir, force=args.force)
    for note in analysis.notes:
        print(f"calf analyse: note: {note}", file=sys.stderr)
    classes = analysis.tables["size_classes"]
    changes = analysis.tables["verdict_changes"]
    print(f"calf analyse: study {args.study}: {len(classes)} size-class test(s), "
          f"{int(classes['significant'].sum()) if len(classes) else 0} significant after "
          f"Holm; {len(changes)} comparison(s) whose verdict depends on the preset or "
          f"metric -> {args.out_dir}")
    return 0
