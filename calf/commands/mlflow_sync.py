"""``calf mlflow-sync``: import a study's finished runs into MLflow (see calf.tracking.sync)."""

from __future__ import annotations

import argparse
import sys

from calf._fs import check_writable, write_json
from calf.layout import METRICS_SUFFIX, RUN_FILE, SHAPE

# a light module: the sync (mlflow, pandas) is imported when the command runs
from calf.tracking.stores import DEFAULT_TRACKING_URI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        f"Run layout: RUNS_ROOT/{SHAPE}/{RUN_FILE}; metrics: METRICS_ROOT/{SHAPE}"
        f"{METRICS_SUFFIX}; profiles: PROFILES_ROOT/<study>/<dataset>/[ratio-R/]foldK.json. "
        "Only runs whose run.json status is 'complete' are imported; syncing again creates "
        "nothing twice. A run's run.json cost becomes system/ metrics (system/wall_s, "
        "system/device_s, ...), its training-set CSV (params.train_slices) an MLflow dataset "
        "input."
    )
    parser.add_argument("--study", required=True, help="study name: the folder below the "
                                                        "roots and the MLflow experiment")
    parser.add_argument("--runs-root", required=True, metavar="DIR",
                        help="root of the run directories (e.g. results/runs)")
    parser.add_argument("--metrics-root", default=None, metavar="DIR",
                        help="root of the per-case metrics CSVs (e.g. results/metrics)")
    parser.add_argument("--profiles-root", default=None, metavar="DIR",
                        help="root of the imbalance profile JSONs, for runs whose run.json "
                             "names none")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, metavar="URI",
                        help="sqlite:///FILE.db or http(s)://HOST:PORT of a tracking server "
                             f"(default {DEFAULT_TRACKING_URI}; MLFLOW_TRACKING_URI is not read)")
    parser.add_argument("--checkpoints", action="store_true",
                        help="also upload each run's checkpoint.pt")
    parser.add_argument("--stamp", default=None, metavar="JSON",
                        help="write a summary of the sync here (a workflow output)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --stamp file")


def run(args: argparse.Namespace) -> int:
    from calf.tracking.sync import sync_study

    if args.stamp:  # refused before anything goes to MLflow
        check_writable(args.stamp, args.force)
    result = sync_study(args.study, args.runs_root, args.metrics_root, args.profiles_root,
                        args.tracking_uri, args.checkpoints)
    for warning in result.warnings:
        print(f"calf mlflow-sync: warning: {warning}", file=sys.stderr)
    for key, status in result.skipped.items():
        print(f"calf mlflow-sync: skipped {key} (status {status})")
    if result.missing_datasets:  # one line: a moved splits folder would name every run
        print(f"calf mlflow-sync: {len(result.missing_datasets)} training/validation CSVs not "
              f"logged as datasets (gone or changed since training), e.g. "
              f"{result.missing_datasets[0]}" + (f"; all in {args.stamp}" if args.stamp else ""))
    if result.without_cost:
        print(f"calf mlflow-sync: {len(result.without_cost)} runs have no cost record in "
              "run.json: system/wall_s and system/train_s from run.json and epochs.csv seconds")
    print(
        f"calf mlflow-sync: study {args.study} -> {args.tracking_uri} (experiment "
        f"{result.experiment_id}): {len(result.created)} created, {len(result.updated)} "
        f"updated, {len(result.unchanged)} unchanged, {len(result.skipped)} skipped"
    )
    if args.stamp:
        write_json(args.stamp, result.summary(), force=args.force)
    return 0
