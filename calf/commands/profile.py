"""``calf profile``: S, K and the CALF branch of a training set, as JSON and a histogram."""

from __future__ import annotations

import argparse

from calf.errors import CalfError
from calf.layout import NATURAL, ratio_value
from calf.profile import AREA_DEFINITIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        action="append",
        required=True,
        metavar="STORE",
        help="slice store directory (repeat for a pooled training set)",
    )
    parser.add_argument(
        "--train-slices",
        metavar="CSV",
        default=None,
        help="training-set CSV (columns dataset, row, ...); " "default: every slice of the stores",
    )
    parser.add_argument(
        "--area",
        choices=AREA_DEFINITIONS,
        default="pixels",
        help="area definition: tumour pixel count (default) or the authors' " "OpenCV contour area",
    )
    parser.add_argument("--out", required=True, help="profile JSON to write")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing --out (and --figure) file"
    )
    parser.add_argument("--figure", default=None, help="histogram PNG to write (optional)")
    parser.add_argument("--dataset", default=None, help="dataset name recorded in the JSON")
    parser.add_argument("--fold", type=int, default=None, help="fold number recorded in the JSON")
    parser.add_argument(
        "--ratio",
        default=None,
        help=f"filter ratio recorded in the JSON: a number in (0, 1) or {NATURAL!r}",
    )


def _ratio(text: str | None) -> float | str | None:
    """The ratio as the JSON records it: a number, ``NATURAL``, or None when not given."""
    if text is None:
        return None
    try:
        value = ratio_value(text)
    except CalfError:
        raise CalfError(f"--ratio {text!r}: expected a number in (0, 1) or {NATURAL!r}") from None
    return NATURAL if value is None else value


def run(args: argparse.Namespace) -> int:
    from calf.profile import profile

    if args.fold is not None and args.fold < 0:
        raise CalfError(f"--fold {args.fold}: expected a fold number >= 0")
    context = {"dataset": args.dataset, "fold": args.fold, "ratio": _ratio(args.ratio)}
    record = profile(args.store, args.out, args.train_slices, args.area, args.figure, context,
                     force=args.force)
    s, k = record["skewness"], record["kurtosis"]
    stats = "S, K undefined" if s is None or k is None else f"S={s:.3f} K={k:.3f}"
    print(
        f"calf profile: {record['n_slices']} slices ({record['n_tumour_slices']} with tumour), "
        f"{stats}, branch {record['branch']} -> {args.out}"
    )
    return 0
