"""``calf split``: patient-grouped folds over slice stores, and ratio-filtered training sets.

Two actions:

- ``calf split folds --store S [--store S2 ...] --out splits_final.json
  [--subjects subjects.csv] [--folds 5 | --holdout 0.1] [--seed SEED] [--crosswalk FILE
  [--crosswalk-column COLUMN=DATASET ...] ...]`` writes nnU-Net's ``splits_final.json`` shape
  (keys ``dataset/case_id`` with several stores) and the subjects table (``dataset,
  patient_id, subject_id``: one subject per group of crosswalk-linked patients), by default
  ``<out stem>_subjects.csv`` beside ``--out``.
- ``calf split select --store S [...] --splits splits_final.json --fold F
  [--ratio R] [--seed SEED] --out train.csv`` writes the training slices of one
  fold, filtered to a tumour-slice ratio ``R`` in (0, 1), or not filtered (the default).

``SEED`` defaults to ``calf.defaults.SEED``. An existing output file is replaced only with
``--force``.

The logic and its documentation live in ``calf.split`` and ``calf.crosswalk``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from calf._fs import atomic_files, check_writable
from calf.defaults import SEED
from calf.errors import CalfError
from calf.layout import NATURAL, ratio_value

CROSSWALK_HELP = """crosswalk files (CSV or .xlsx): every row links the IDs in its chosen columns.
  Each --crosswalk-column belongs to the --crosswalk before it. A column named after a
  loaded dataset (e.g. upenn_gbm, brats) holds that dataset's case or patient IDs
  (case-insensitive, leading zeros in numbers ignored); IDs that match nothing are
  ignored. Another name (brats2021) only chains rows of several files; brats2021 also
  matches a brats store named the 2021 way. Pooling brats with upenn_gbm or ucsf_pdgm
  needs crosswalks linking them. The published files (calf download --crosswalk FILE):
    --crosswalk BraTS2021_MappingToTCIA.xlsx
      --crosswalk-column 'PatientID on TCIA Radiology Portal=upenn_gbm'
      --crosswalk-column 'BraTS2021 ID=brats2021'
    --crosswalk UCSF-PDGM-metadata_v5.csv
      --crosswalk-column ID=ucsf_pdgm --crosswalk-column 'BraTS21 ID=brats2021'
    --crosswalk BraTS2023_2017_GLI_Mapping.xlsx   (BraTS 2023+ names)
      --crosswalk-column BraTS2023=brats --crosswalk-column BraTS2021=brats2021
"""


class _CrosswalkFile(argparse.Action):
    """``--crosswalk FILE``: a new linking file, with no named columns yet."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.crosswalk = [*(namespace.crosswalk or []), (values, [])]


class _CrosswalkColumn(argparse.Action):
    """``--crosswalk-column COLUMN=NAMESPACE``: a column of the last ``--crosswalk``."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.crosswalk:
            parser.error(
                f"--crosswalk-column {values}: give the --crosswalk FILE it belongs to first"
            )
        namespace.crosswalk[-1][1].append(values)


def _seed(text: str) -> int:
    """A seed numpy and scikit-learn accept: an integer in [0, 2**32)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if not 0 <= seed < 2**32:
        raise argparse.ArgumentTypeError(f"seed {seed} is outside [0, 2**32)")
    return seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    folds = actions.add_parser(
        "folds",
        help="write patient-grouped folds (or one holdout split) as splits_final.json",
        description="Patient-grouped k-fold cross-validation, or the authors' single "
        "patient-level holdout split, over one or more slice stores. Cases of one patient "
        "(and of subjects linked by a crosswalk) never straddle a split.",
        epilog=CROSSWALK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    folds.add_argument(
        "--store",
        action="append",
        required=True,
        metavar="DIR",
        help="slice store directory (repeat to pool datasets)",
    )
    folds.add_argument("--out", required=True, metavar="JSON", help="splits file to write")
    folds.add_argument(
        "--subjects",
        metavar="CSV",
        help="subjects table to write: dataset, patient_id, subject_id, one subject per "
        "group of linked patients (default: <out stem>_subjects.csv beside --out)",
    )
    mode = folds.add_mutually_exclusive_group()
    mode.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    mode.add_argument(
        "--holdout",
        type=float,
        metavar="FRACTION",
        help="one train/test split with this fraction of patients in test (e.g. 0.1)",
    )
    folds.add_argument("--seed", type=_seed, default=SEED, help=f"default {SEED}")
    folds.add_argument(
        "--crosswalk",
        action=_CrosswalkFile,
        default=[],
        metavar="FILE",
        help="CSV or .xlsx linking patient IDs across datasets (repeatable; see below)",
    )
    folds.add_argument(
        "--crosswalk-column",
        action=_CrosswalkColumn,
        metavar="COLUMN=DATASET",
        help="use column COLUMN of the last --crosswalk as IDs of DATASET (repeatable; "
        "columns named after the loaded datasets are always used)",
    )
    folds.add_argument(
        "--force", action="store_true", help="replace an existing --out or --subjects file"
    )

    select = actions.add_parser(
        "select",
        help="write the (ratio-filtered) training slices of one fold as CSV",
        description="The training slices of one fold of a splits file, optionally subsampled "
        "so that tumour slices make up a given fraction (all of the scarcer group kept).",
    )
    select.add_argument(
        "--store",
        action="append",
        required=True,
        metavar="DIR",
        help="slice store directory (repeat for a pooled splits file)",
    )
    select.add_argument("--splits", required=True, metavar="JSON", help="splits_final.json")
    select.add_argument("--fold", type=int, required=True, help="fold number, from 0")
    select.add_argument(
        "--ratio",
        default=NATURAL,
        help=f"tumour-slice fraction in (0, 1), or {NATURAL!r} (default): no filtering",
    )
    select.add_argument("--seed", type=_seed, default=SEED, help=f"default {SEED}")
    select.add_argument("--out", required=True, metavar="CSV", help="training-set CSV to write")
    select.add_argument("--force", action="store_true", help="replace an existing --out file")


def subjects_path(out: str | Path) -> Path:
    """The default subjects table of a splits file: ``<stem>_subjects.csv`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_subjects.csv")


def _folds(args: argparse.Namespace) -> int:
    from calf import split

    subjects_out = Path(args.subjects) if args.subjects else subjects_path(args.out)
    if subjects_out.resolve() == Path(args.out).resolve():
        raise CalfError(f"--subjects {subjects_out}: the same file as --out")
    check_writable(args.out, args.force)
    check_writable(subjects_out, args.force)
    index = split.read_indexes(args.store)
    crosswalks = [split.load_crosswalk(path, specs) for path, specs in args.crosswalk]
    cases = split.grouped_cases(index, crosswalks)
    splits = split.split_cases(cases, folds=args.folds, holdout=args.holdout, seed=args.seed)
    subjects = split.subject_table(cases)
    with atomic_files([subjects_out, args.out], force=args.force) as (subjects_tmp, out_tmp):
        # both outputs or neither
        split.write_subjects(subjects, subjects_tmp, force=True)
        split.write_splits(splits, out_tmp, force=True)
    n_cases = len(splits[0]["train"]) + len(splits[0]["val"])
    print(
        f"wrote {len(splits)} fold(s) over {n_cases} cases to {args.out}, and "
        f"{len(subjects)} patients as {subjects['subject_id'].nunique()} subjects to "
        f"{subjects_out}"
    )
    return 0


def _select(args: argparse.Namespace) -> int:
    from calf import split

    check_writable(args.out, args.force)
    try:
        ratio = ratio_value(args.ratio)
    except CalfError:
        raise CalfError(
            f"--ratio {args.ratio}: expected {NATURAL!r} or a number in (0, 1)"
        ) from None
    splits = split.read_splits(args.splits)
    index = split.read_indexes(args.store)
    rows = split.training_set(index, splits, args.fold, ratio, args.seed, source=args.splits)
    split.write_training_set(rows, args.out, force=args.force)
    n_tumour = int((rows["area"] > 0).sum())
    print(f"wrote {len(rows)} training slices ({n_tumour} with tumour) to {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    return _folds(args) if args.action == "folds" else _select(args)
