"""``calf evaluate``: per-case metrics of trained runs on one fold's validation cases.

``calf evaluate --run RUN --store S [--store S2 ...] --splits splits_final.json --fold F
--out X.csv [--subjects subjects.csv] [--conventions JSON] [--dataset NAME --model M
--loss L --ratio R --seed N] [--batch-size 64] [--device auto] [--force]`` writes ``X.csv``, ``X.json``,
``X_slices.csv`` and ``X_overlays/`` (see ``calf.evaluate.pipeline``).

``--run``, ``--out`` and ``--loss`` may be repeated, pairing the n-th of each, to evaluate
several runs of the same fold in one process (the workflow evaluates all losses of a
model and fold together: one start-up instead of one per run).
"""

from __future__ import annotations

import argparse

from calf.errors import CalfError

CONVENTIONS_HELP = """empty-mask conventions (a JSON object overriding any of these keys;
null or "nan" = NaN, left out of means):
  dice_both_empty 1, iou_both_empty 1      truth and prediction empty
  hd95_both_empty 0                         truth and prediction empty
  hd95_one_empty 373.13                     exactly one empty (BraTS style)
  sensitivity_empty_truth null              no tumour in the truth
  specificity_empty_background null         truth fills the whole volume
  precision_empty_prediction null           nothing predicted
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--conventions",
        metavar="JSON",
        default=None,
        help="empty-mask conventions to override: a JSON file or an inline JSON object "
        "(see below)",
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
        "--batch-size", type=int, default=64, help="slices per forward pass (default 64)"
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    from calf.evaluate import Labels, evaluate
    from calf.split import parse_ratio

    ratio = None
    if args.ratio is not None:
        try:
            ratio = parse_ratio(args.ratio)
        except CalfError as err:
            raise CalfError(f"--ratio: {err}") from None
        ratio = "natural" if ratio is None else ratio
    losses = args.loss or [None] * len(args.run)
    if not len(args.run) == len(args.out) == len(losses):
        raise CalfError(
            f"--run, --out and --loss pair up: got {len(args.run)} --run, {len(args.out)} "
            f"--out and {len(args.loss or [])} --loss"
        )
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
        )
        summary = record["summary"]
        mean, pooled = (
            "n/a" if v is None else f"{v:.4f}"
            for v in (summary["mean_dice"], summary["batch_pooled_dice_32"])
        )
        print(
            f"calf evaluate: {record['counts']['volumes']} volumes of "
            f"{record['counts']['cases']} cases, mean Dice {mean}, batch-pooled Dice {pooled} "
            f"-> {out}"
        )
    return 0
