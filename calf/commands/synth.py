"""``calf synth``: write a synthetic cohort in a real release's folder layout."""

from __future__ import annotations

import argparse

from calf.synth import DEFAULT_CASES, DEFAULT_PRESET, DEFAULT_SHAPE, LAYOUTS, PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "presets (tumour sizes -> CALF branch at dataset scope):\n"
        + "\n".join(f"  {p.name:10s} {p.branch:8s} {p.description}" for p in PRESETS.values())
        + "\n(lgg_1p19q masks cover three slices per case, so every preset is sparse there)"
    )
    parser.add_argument(
        "--layout",
        required=True,
        metavar="LAYOUT",
        help=f"release layout to write: {', '.join(LAYOUTS)}",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="ROOT",
        help="cohort root to create: a missing or empty folder, or an earlier cohort "
        "(holds calf_synth.json), which is replaced",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace --out even when it is not a cohort"
    )
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        metavar="NAME",
        help=f"tumour-size preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--cases",
        type=int,
        default=DEFAULT_CASES,
        metavar="N",
        help=f"number of exams, follow-ups included (default {DEFAULT_CASES})",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(DEFAULT_SHAPE),
        metavar=("X", "Y", "Z"),
        help="voxels per volume, Z axial (default %s)" % " ".join(map(str, DEFAULT_SHAPE)),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from calf.synth import write_cohort
    from calf.synth.cohort import check_arguments, resolve_preset
    from calf.synth.layouts import MASK_SLICES

    preset = resolve_preset(args.preset)
    check_arguments(args.layout, args.cases, args.shape)
    case_ids = write_cohort(
        args.layout, args.out, preset, args.cases, args.shape, args.seed, force=args.force
    )
    branch = (
        "three-slice masks, expect log10"
        if args.layout in MASK_SLICES
        else f"expected CALF branch {preset.branch}"
    )
    print(
        f"calf synth: wrote {len(case_ids)} cases to {args.out} "
        f"({args.layout} layout, preset {preset.name}: {branch})"
    )
    return 0
