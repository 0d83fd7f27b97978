"""``calf evaluate``: per-case metrics of trained runs on one fold's validation cases.

``calf evaluate --run RUN --store S [--store S2 ...] --splits splits_final.json --fold F
--out X.csv [--subjects subjects.csv] [--preset auto|suite|brats|nnunet] [--conventions JSON]
[--space native|training] [--resample logits|nearest] [--nsd-tolerance MM] [--lesions JSON]
[--no-lesion-metrics] [--dataset NAME --model M --loss L --ratio R --seed N]
[--batch-size 64] [--device auto] [--force]`` writes ``X.csv``, ``X.json``, ``X_slices.csv``
and ``X_overlays/`` (see ``calf.evaluate.pipeline``); an existing output is replaced only
with ``--force``.

``--run``, ``--out`` and ``--loss`` may be repeated, pairing the n-th of each, to evaluate
several runs of the same fold in one process (the workflow evaluates all losses of a
model and fold together: one start-up instead of one per run).
"""

from __future__ import annotations

import argparse

from calf.errors import CalfError

CONVENTIONS_HELP = """conventions presets (--preset; --conventions overrides single keys with a
JSON object, null or "nan" = NaN, left out of means):
  key                            suite      brats            nnunet
  dice_both_empty, iou_both_empty   1        1                NaN
  hd95_both_empty                   0        0                NaN
  hd95_one_empty                 diagonal   374 (BraTS grid)  NaN
  nsd_both_empty / nsd_one_empty   1 / 0     1 / 0            NaN
  sensitivity_both_empty          NaN        1                NaN
  sensitivity_empty_truth         NaN        0                NaN
  specificity_empty_background    NaN        0                NaN
  precision_empty_prediction      NaN        NaN              NaN
diagonal: the diagonal in mm of the grid the case is scored on. auto: brats for
BraTS-family label maps (BraTS, UPENN-GBM, UCSF-PDGM), else suite.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calf.device import DEVICE_CHOICES
    from calf.evaluate.conventions import PRESET_NAMES
    from calf.evaluate.metrics import MetricSettings
    from calf.evaluate.native import RESAMPLES
    from calf.evaluate.pipeline import SPACES
    from calf.evaluate.predict import PREDICT_BATCH

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = CONVENTIONS_HELP
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="DIR",
        help="finished training run (checkpoint.pt, run.json); repeat with --out for several",
    )
    parser.add_argument(
        "--store",
        action="append",
        required=True,
        metavar="DIR",
        help="slice store directory (repeat for a pooled run)",
    )
    parser.add_argument("--splits", required=True, metavar="JSON", help="splits_final.json")
    parser.add_argument(
        "--subjects",
        metavar="CSV",
        default=None,
        help="the subjects table calf split folds wrote with the splits file: the "
        "subject_id column (default: <dataset>/<patient_id>)",
    )
    parser.add_argument(
        "--fold", type=int, required=True, help="fold whose 'val' cases to evaluate"
    )
    parser.add_argument(
        "--out",
        action="append",
        required=True,
        metavar="CSV",
        help="per-case metrics CSV; X.json, X_slices.csv, X_overlays/ go beside it "
        "(one per --run)",
    )
    parser.add_argument(
        "--preset",
        choices=("auto", *PRESET_NAMES),
        default="auto",
        help="conventions preset for undefined metrics (default auto; see below)",
    )
    parser.add_argument(
        "--conventions",
        metavar="JSON",
        default=None,
        help="keys of the preset to override: a JSON file or an inline JSON object",
    )
    parser.add_argument(
        "--space",
        choices=SPACES,
        default=SPACES[0],
        help="score each case on its original grid in mm (native, default) or on the "
        "training grid (fast, not comparable with published numbers)",
    )
    parser.add_argument(
        "--resample",
        choices=RESAMPLES,
        default=RESAMPLES[0],
        help="native space: resample logits bilinearly then threshold (default), or the "
        "thresholded mask nearest-neighbour",
    )
    parser.add_argument(
        "--nsd-tolerance", type=float, default=MetricSettings().nsd_tolerance_mm, metavar="MM",
        help="NSD tolerance in mm (default %(default)g)",
    )
    parser.add_argument(
        "--lesions", metavar="JSON", default=None,
        help="lesion-wise settings to override, a JSON object of dilation, "
        "volume_threshold, penalty (default: BraTS 2023 GLI's)",
    )
    parser.add_argument(
        "--no-lesion-metrics", action="store_true",
        help="skip the lesion-wise and instance-wise metrics (their columns are NaN)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset column (default: each case's store, which keeps a pool's member datasets)",
    )
    parser.add_argument(
        "--model", default=None, help="model column (default: the checkpoint's model)"
    )
    parser.add_argument(
        "--loss",
        action="append",
        default=None,
        help="loss column (default: the checkpoint's loss); one per --run when given",
    )
    parser.add_argument(
        "--ratio", default=None, help="add a ratio column: 'natural' or a number in (0, 1)"
    )
    parser.add_argument("--seed", type=int, default=None, help="add a seed column")
    parser.add_argument(
        "--batch-size", type=int, default=PREDICT_BATCH,
        help="slices per forward pass (default %(default)s)",
    )
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default auto)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    from calf.evaluate import Labels, OutputPaths, evaluate
    from calf.evaluate.pooled import POOLED_SUMMARY_KEY
    from calf.layout import NATURAL, ratio_value

    ratio = None
    if args.ratio is not None:
        try:
            value = ratio_value(args.ratio)
        except CalfError as err:
            raise CalfError(f"--ratio: {err}") from None
        ratio = NATURAL if value is None else value
    losses = args.loss or [None] * len(args.run)
    if not len(args.run) == len(args.out) == len(losses):
        raise CalfError(
            f"--run, --out and --loss pair up: got {len(args.run)} --run, {len(args.out)} "
            f"--out and {len(args.loss or [])} --loss"
        )
    metrics = metric_settings_of(args)
    for out in args.out:  # every run's outputs before the first run is evaluated
        OutputPaths.of(out).check(args.force)
    if len({str(OutputPaths.of(out).csv.resolve()) for out in args.out}) < len(args.out):
        raise CalfError(f"--out {' '.join(args.out)}: two runs would write the same file")
    for run_dir, out, loss in zip(args.run, args.out, losses):
        labels = Labels(args.dataset, args.model, loss, ratio, args.seed)
        record = evaluate(
            run_dir,
            args.store,
            args.splits,
            args.fold,
            out,
            args.conventions,
            labels,
            batch_size=args.batch_size,
            device=args.device,
            force=args.force,
            progress=True,
            subjects=args.subjects,
            space=args.space,
            resample=args.resample,
            preset=args.preset,
            metrics=metrics,
        )
        summary = record["summary"]
        mean, pooled = (
            "n/a" if v is None else f"{v:.4f}"
            for v in (summary["mean_dice"], summary[POOLED_SUMMARY_KEY])
        )
        print(
            f"calf evaluate: {record['counts']['volumes']} volumes of "
            f"{record['counts']['cases']} cases, mean Dice {mean}, batch-pooled Dice {pooled} "
            f"-> {out}"
        )
    return 0


def metric_settings_of(args: argparse.Namespace):
    """The metric settings of the command line; CalfError naming the option if bad."""
    import json
    import math
    from dataclasses import fields, replace

    from calf.evaluate.lesions import LesionSettings
    from calf.evaluate.metrics import MetricSettings

    if not (math.isfinite(args.nsd_tolerance) and args.nsd_tolerance > 0):
        raise CalfError(f"--nsd-tolerance {args.nsd_tolerance:g}: expected a positive number of mm")
    lesions = LesionSettings()
    if args.lesions:
        try:
            data = json.loads(args.lesions)
        except ValueError as err:
            raise CalfError(f"--lesions {args.lesions!r}: not valid JSON ({err})") from None
        known = [f.name for f in fields(LesionSettings)]
        if not isinstance(data, dict) or set(data) - set(known):
            raise CalfError(f"--lesions {args.lesions!r}: expected an object of {', '.join(known)}")
        try:
            lesions = replace(lesions, **data)
        except (TypeError, ValueError) as err:
            raise CalfError(f"--lesions {args.lesions!r}: {err}") from None
    return MetricSettings(args.nsd_tolerance, lesions, not args.no_lesion_metrics)
