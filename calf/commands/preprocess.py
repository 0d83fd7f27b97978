"""``calf preprocess``: one dataset's NIfTI cohort -> one slice store directory."""

from __future__ import annotations

import argparse

from calf.errors import CalfError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        required=True,
        help="adapter name: upenn_gbm, ucsf_pdgm, brats, lgg_1p19q or folder",
    )
    parser.add_argument("--root", required=True, help="the release's root folder")
    parser.add_argument(
        "--out",
        required=True,
        help="slice store directory to write (an earlier store there is rebuilt when its "
        "input or settings changed)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace --out even when it is not a slice store"
    )
    parser.add_argument(
        "--modalities",
        nargs="+",
        metavar="MOD",
        default=None,
        help="modalities that become samples (t1 t1c t2 flair); default: all found",
    )
    parser.add_argument("--size", type=int, default=256, help="training size S (default 256)")
    parser.add_argument(
        "--scaling",
        choices=("volume", "slice"),
        default="volume",
        help="min-max scale per volume (default, the suite's) or per axial slice (the "
        "authors', for every dataset)",
    )
    parser.add_argument(
        "--mask-resize",
        choices=("bilinear", "nearest"),
        default="bilinear",
        help="bilinear then > 0 (the authors', default) or nearest neighbour",
    )
    parser.add_argument(
        "--region",
        choices=("wt", "tc", "et"),
        default="wt",
        help="binary target: whole tumour (default), tumour core or enhancing tumour, with "
        "each release's labels (calf.datasets.regions); recorded in store.json",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, one case each at a time (default 1)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option passed to the dataset adapter (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CalfError(f"--option {pair!r}: expected KEY=VALUE")
        options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from calf.datasets import discover
    from calf.preprocess import PreprocessSettings, preprocess

    if args.workers < 1:
        raise CalfError(f"--workers must be at least 1, got {args.workers}")
    options = _options(args.option)
    settings = PreprocessSettings(
        size=args.size,
        scaling=args.scaling,
        mask_resize=args.mask_resize,
        modalities=tuple(args.modalities) if args.modalities else None,
        options=options,
        region=args.region,
    )
    cases = discover(args.dataset, args.root, modalities=args.modalities, **options)
    summary = preprocess(
        cases, args.out, settings, workers=args.workers, progress=not args.quiet, force=args.force
    )
    what = f"{summary.n_images} image slices, {summary.n_masks} masks from {summary.n_cases} cases"
    if summary.built:
        print(f"calf preprocess: wrote {summary.path} ({what})")
    else:
        print(f"calf preprocess: {summary.path} is up to date ({what}); nothing to do")
    return 0
