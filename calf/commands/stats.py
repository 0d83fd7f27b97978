"""``calf stats``: a study's paired tests, Friedman test, ranks and Nemenyi post-hoc test.

``calf stats --metrics-root DIR --study NAME --out-dir DIR [--calf-loss L ...]
[--metric M ...] [--friedman-metric M ...] [--alpha A] [--family group|study]
[--missing error|drop] [--zero-method wilcox|pratt|zsplit] [--resamples N] [--seed S]
[--by-modality] [--force] METRICS_CSV...`` writes ``paired.csv``, ``friedman.csv``,
``ranks.csv``, ``nemenyi.csv`` and ``stats.json`` into ``--out-dir`` (see ``calf.stats.run``);
the patient is the unit of every test. ``--out-dir`` is replaced as a whole: a folder that
does not hold a previous run's ``stats.json`` is refused unless ``--force``.
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
from calf.stats.run import DEFAULT_METRICS, FAMILIES, MISSING, RESAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_metrics_arguments(parser, "the study to test")
    parser.add_argument("--out-dir", required=True, metavar="DIR",
                        help="directory for paired.csv, friedman.csv, ranks.csv, nemenyi.csv, "
                             "stats.json (new, empty, or a previous run's; else --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out-dir even when it holds no stats.json of a "
                             "previous run (its files are deleted)")
    parser.add_argument("--calf-loss", action="append", default=None, metavar="LOSS",
                        help="loss tested against every other loss (repeatable; default: "
                             f"{', '.join(CALF_LOSSES)}, those the study has)")
    parser.add_argument("--no-paired", action="store_true",
                        help="no paired tests (a study without a CALF loss): only the "
                             "Friedman test, ranks and Nemenyi test")
    parser.add_argument("--metric", action="append", default=None,
                        help=f"metric of the paired tests, one of {', '.join(METRIC_COLUMNS)} "
                             f"(repeatable; default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--friedman-metric", action="append", default=None,
                        help="metric of the Friedman/Nemenyi tests (repeatable; default: "
                             f"{', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"significance level (default {ALPHA:g})")
    parser.add_argument("--family", choices=FAMILIES, default=FAMILIES[0],
                        help="Holm family: every test of one (dataset, model, ratio), or of "
                             f"the whole study (default {FAMILIES[0]})")
    parser.add_argument("--missing", choices=MISSING, default=MISSING[0],
                        help="a case one loss has and another lacks: stop (default) or "
                             "leave it out")
    parser.add_argument("--zero-method", choices=ZERO_METHODS, default=ZERO_METHODS[0],
                        help="scipy.stats.wilcoxon's treatment of zero differences "
                             f"(default {ZERO_METHODS[0]})")
    parser.add_argument("--resamples", type=int, default=RESAMPLES,
                        help=f"bootstrap resamples of the median-difference CI (default "
                             f"{RESAMPLES})")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"bootstrap seed (default {SEED})")
    parser.add_argument("--by-modality", action="store_true",
                        help="also one group per modality (patients again the unit), beside "
                             "the groups that pool the modalities (modality 'all')")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from calf.evaluate.companion import read_companion
    from calf.evaluate.pipeline import scoring_summary
    from calf.stats.collect import STATS_GROUP_KEYS, load_case_metrics
    from calf.stats.run import check_out_dir, compute_stats, write_stats

    if args.no_paired and args.calf_loss:
        raise CalfError("--no-paired and --calf-loss: give one or the other")
    check_out_dir(args.out_dir, force=args.force)  # before the work, not after
    cases = load_case_metrics(args.metrics, args.metrics_root)
    losses = set(cases.loc[cases["study"] == args.study, "loss"])
    for loss in args.calf_loss or []:
        if losses and loss not in losses:
            raise CalfError(f"--calf-loss {loss}: not a loss of study {args.study} "
                            f"(its losses: {', '.join(sorted(losses))})")
    calf_losses = () if args.no_paired else (args.calf_loss or CALF_LOSSES)
    # a metrics table made by hand has no companion: {} (an older result format)
    scoring = scoring_summary([read_companion(path, missing_ok=True) for path in args.metrics])
    stats = compute_stats(
        cases,
        study=args.study,
        calf_losses=calf_losses,
        metrics=args.metric or DEFAULT_METRICS,
        friedman_metrics=args.friedman_metric or DEFAULT_METRICS,
        alpha=args.alpha,
        family=args.family,
        missing=args.missing,
        zero_method=args.zero_method,
        resamples=args.resamples,
        seed=args.seed,
        by_modality=args.by_modality,
        scoring=scoring,
    )
    write_stats(stats, args.out_dir, force=args.force)
    for note in stats.notes:
        print(f"calf stats: note: {note}", file=sys.stderr)
    paired = stats.paired
    groups = pd.concat([paired[list(STATS_GROUP_KEYS)], stats.friedman[list(STATS_GROUP_KEYS)]])
    groups = len(groups.drop_duplicates())
    print(f"calf stats: study {args.study}: {groups} group(s), {len(paired)} paired test(s), "
          f"{int(paired['significant'].sum())} significant after Holm, "
          f"{len(stats.friedman)} Friedman test(s) -> {args.out_dir}")
    return 0

