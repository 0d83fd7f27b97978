"""The arguments every command that reads per-case metrics CSVs takes, defined once."""

from __future__ import annotations

import argparse

from calf.layout import SHAPE


def add_metrics_arguments(parser: argparse.ArgumentParser, study: str | None,
                          nargs: str = "+") -> None:
    """``METRICS_CSV...``, ``--metrics-root`` and, with ``study`` (its help), ``--study``."""
    parser.add_argument("metrics", nargs=nargs, metavar="METRICS_CSV",
                        help=f"per-case metrics CSVs, <root>/{SHAPE}.csv")
    parser.add_argument("--metrics-root", required=True, metavar="DIR",
                        help="the directory the CSV paths are relative to (results/metrics)")
    if study is not None:
        parser.add_argument("--study", required=True, help=study)
