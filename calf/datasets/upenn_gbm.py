"""UPENN-GBM (TCIA, NIfTI release): one case per scan, ``_11`` baseline and ``_21`` follow-up.

Layout of the release (the Faspex package unpacks it under ``.../NIfTI-files/``; the root
may be that folder or any folder up to three levels above it)::

    images_structural/UPENN-GBM-00001_11/UPENN-GBM-00001_11_{T1,T1GD,T2,FLAIR}.nii.gz
    automated_segm/UPENN-GBM-00001_11_automated_approx_segm.nii.gz   (611 scans)
    images_segm/UPENN-GBM-00001_11_segm.nii.gz                        (147 expert-corrected)

Case ID = scan folder name; patient ID = the part before ``_11``/``_21``. Labels are the
BraTS 2021 set {0, 1 necrosis, 2 oedema, 4 enhancing}. Scans without the chosen
segmentation (most follow-ups) are not cases and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from calf.datasets import _layout, regions
from calf.datasets.base import Case
from calf.errors import CalfError

DATASET = "upenn_gbm"
LABEL_MAP = "brats2021"
LABELS = regions.valid_labels(LABEL_MAP)
TOKENS = {"t1": "T1", "t1c": "T1GD", "t2": "T2", "flair": "FLAIR"}
SEGMENTATIONS = ("automated", "expert", "expert_or_automated")
SCAN = re.compile(r"^(?P<patient>UPENN-GBM-\d+)_(?P<visit>\d+)$")
EXPECTED = (
    "images_structural/UPENN-GBM-NNNNN_11/UPENN-GBM-NNNNN_11_{T1,T1GD,T2,FLAIR}.nii.gz "
    "with automated_segm/<ID>_automated_approx_segm.nii.gz or images_segm/<ID>_segm.nii.gz"
)


def automated_mask(top: Path, case_id: str) -> Path:
    return top / "automated_segm" / f"{case_id}_automated_approx_segm.nii.gz"


def expert_mask(top: Path, case_id: str) -> Path:
    return top / "images_segm" / f"{case_id}_segm.nii.gz"


def image_path(top: Path, case_id: str, modality: str) -> Path:
    return top / "images_structural" / case_id / f"{case_id}_{TOKENS[modality]}.nii.gz"


def _holds_layout(folder: Path) -> bool:
    return (folder / "images_structural").is_dir()


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    segmentation: str = "automated",
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every scan of the release that has the chosen segmentation.

    ``segmentation``: ``automated`` (the authors' choice, every baseline), ``expert``
    (the expert-corrected subset only) or ``expert_or_automated`` (expert where released).
    """
    if segmentation not in SEGMENTATIONS:
        raise CalfError(
            f"{DATASET}: segmentation must be one of {', '.join(SEGMENTATIONS)}, got {segmentation!r}"
        )
    base = _layout.check_root(DATASET, root)
    wanted = _layout.choose_modalities(DATASET, modalities, TOKENS)
    labels = _layout.parse_labels(DATASET, valid_labels, LABELS)
    found: list[tuple[Case, Path]] = []
    unlabelled = 0
    for top in _layout.find_layout_roots(base, _holds_layout):
        automated = (
            set(_layout.files_in(top / "automated_segm"))
            if (top / "automated_segm").is_dir()
            else set()
        )
        expert = (
            set(_layout.files_in(top / "images_segm")) if (top / "images_segm").is_dir() else set()
        )
        for scan in _layout.subdirs(top / "images_structural"):
            match = SCAN.match(scan.name)
            if not match:
                continue
            case_id = scan.name
            mask = _pick_mask(top, case_id, segmentation, automated, expert)
            if mask is None:
                unlabelled += 1
                continue
            images = {
                m: _layout.require(image_path(top, case_id, m), f"{DATASET} case {case_id}")
                for m in wanted
            }
            case = Case(DATASET, case_id, match["patient"], images, mask, labels, LABEL_MAP)
            found.append((case, scan))
    if not found:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    return _layout.finish(DATASET, found, unlabelled)


def _pick_mask(
    top: Path, case_id: str, segmentation: str, automated: set[str], expert: set[str]
) -> Path | None:
    auto, manual = automated_mask(top, case_id), expert_mask(top, case_id)
    if segmentation in ("expert", "expert_or_automated") and manual.name in expert:
        return manual
    if segmentation in ("automated", "expert_or_automated") and auto.name in automated:
        return auto
    return None
