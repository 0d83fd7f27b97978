"""What every adapter shares: root checks, modality choice, layout search, final checks.

Adapters only look at names on disk (``os.scandir`` and ``stat``); no volume is opened
while discovering, so discovering a release of hundreds of cases takes milliseconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from calf.datasets.base import MODALITIES, Case
from calf.errors import CalfError

log = logging.getLogger("calf.datasets")

# the modalities the authors made samples of (README, "The authors' protocol")
AUTHORS_MODALITIES = ("t1", "t2", "flair")

# how deep below the given root a release's own top folder is looked for (an archive
# often unpacks into wrapper folders such as "PKG - UPENN-GBM-NIfTI/UPENN-GBM/NIfTI-files")
SEARCH_DEPTH = 3


def check_root(dataset: str, root: str | os.PathLike[str]) -> Path:
    """The cohort root as an absolute path; CalfError when it is missing or not a folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CalfError(f"{dataset}: cohort root {path} does not exist")
    if not path.is_dir():
        raise CalfError(f"{dataset}: cohort root {path} is not a folder")
    return path.resolve()


def subdirs(folder: Path) -> list[Path]:
    """Immediate subfolders, sorted by name (hidden ones skipped)."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except OSError as err:
        raise CalfError(f"cannot list folder {folder}: {err.strerror or err}") from err
    return sorted(found)


def files_in(folder: Path) -> list[str]:
    """Names of the plain files of a folder (hidden ones skipped), sorted."""
    try:
        with os.scandir(folder) as entries:
            found = [e.name for e in entries if e.is_file() and not e.name.startswith(".")]
    except OSError as err:
        raise CalfError(f"cannot list folder {folder}: {err.strerror or err}") from err
    return sorted(found)


def find_layout_roots(root: Path, holds_layout: Callable[[Path], bool]) -> list[Path]:
    """The shallowest folders at or below ``root`` (at most SEARCH_DEPTH levels) that hold
    the release's layout; several when they sit side by side (e.g. training and
    validation folders). Empty when none is found."""
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        found = [folder for folder in level if holds_layout(folder)]
        if found:
            return found
        level = [child for folder in level for child in subdirs(folder)]
        if not level:
            break
    return []


def choose_modalities(
    dataset: str,
    requested: Sequence[str] | str | None,
    available: Iterable[str],
    default: Sequence[str] = AUTHORS_MODALITIES,
) -> tuple[str, ...]:
    """Validate a modality list against the canonical names and what the release has."""
    offered = tuple(m for m in MODALITIES if m in set(available))
    if requested is None:
        return tuple(default)
    if isinstance(requested, str):  # "t1,t2" from a config string or --option
        requested = [m for m in requested.replace(",", " ").split() if m]
    wanted = tuple(dict.fromkeys(str(m).strip().lower() for m in requested))
    if not wanted:
        raise CalfError(f"{dataset}: the modality list is empty; choose from {', '.join(offered)}")
    for modality in wanted:
        if modality not in MODALITIES:
            raise CalfError(
                f"{dataset}: unknown modality {modality!r}; canonical names: {', '.join(MODALITIES)}"
            )
        if modality not in offered:
            raise CalfError(
                f"{dataset}: this release has no {modality} images; it has {', '.join(offered)}"
            )
    return wanted


def parse_labels(
    dataset: str, value: Sequence[int] | str | None, default: tuple[int, ...]
) -> tuple[int, ...]:
    """The valid mask labels: the release's own set, or an override ("0,1,255" or a list)."""
    if value is None:
        return default
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        labels = tuple(sorted({int(v) for v in items}))
    except (TypeError, ValueError) as err:
        raise CalfError(f"{dataset}: valid_labels must be integers, got {value!r}") from err
    if 0 not in labels:
        raise CalfError(
            f"{dataset}: valid_labels must include the background label 0, got {value!r}"
        )
    return labels


def require(path: Path, what: str) -> Path:
    """``path`` when it is a file; CalfError naming it otherwise."""
    if not path.is_file():
        raise CalfError(f"{what}: missing file {path}")
    return path


def nifti_found(root: Path, limit: int = 3) -> tuple[int, list[str]]:
    """NIfTI files in folders at most SEARCH_DEPTH + 1 levels below ``root`` (the depth the
    adapters search): their count and the first ``limit`` paths relative to ``root``, in
    breadth-first order."""
    count, first = 0, []
    level = [root]
    for _ in range(SEARCH_DEPTH + 2):
        for folder in level:
            for name in files_in(folder):
                if name.lower().endswith((".nii.gz", ".nii")):
                    count += 1
                    if len(first) < limit:
                        first.append(str((folder / name).relative_to(root)))
        level = [child for folder in level for child in subdirs(folder)]
        if not level:
            break
    return count, first


def no_cases(dataset: str, root: Path, expected: str, unlabelled: int = 0) -> CalfError:
    """The error for a root without a single usable case: the layout expected, how deep
    the search went and what NIfTI files it saw there."""
    plural = "s" if unlabelled != 1 else ""
    extra = f" ({unlabelled} exam folder{plural} without a tumour mask)" if unlabelled else ""
    count, first = nifti_found(root)
    seen = f"{count} NIfTI file{'s' if count != 1 else ''}"
    if first:
        seen += " (" + ", ".join(first) + (", ..." if count > len(first) else "") + ")"
    return CalfError(
        f"{dataset}: no cases found under {root}{extra}; looked for the layout up to "
        f"{SEARCH_DEPTH} folder levels below it and saw {seen} in folders up to "
        f"{SEARCH_DEPTH + 1} levels below it; expected {expected}"
    )


def finish(dataset: str, found: Iterable[tuple[Case, Path]], unlabelled: int = 0) -> list[Case]:
    """The cases sorted by case ID; CalfError for two cases with one ID, naming both
    folders. ``found`` pairs each case with the folder it was found in."""
    by_id: dict[str, tuple[Case, Path]] = {}
    for case, folder in found:
        if case.case_id in by_id:
            raise CalfError(
                f"{dataset}: two cases with ID {case.case_id}: {by_id[case.case_id][1]} and {folder}"
            )
        by_id[case.case_id] = (case, folder)
    if unlabelled:
        log.info("%s: skipped %d exams that have no tumour mask", dataset, unlabelled)
    return [by_id[key][0] for key in sorted(by_id)]
