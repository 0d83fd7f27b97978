"""UCSF-PDGM (TCIA, version 5): one folder per exam, follow-up exams beside the baseline.

Layout of the release (the root may be ``UCSF-PDGM-v5`` or a folder up to three levels
above it, e.g. the ``PKG - UCSF-PDGM Version 5`` package folder)::

    UCSF-PDGM-0004_nifti/UCSF-PDGM-0004_{T1,T1c,T2,FLAIR}.nii.gz
    UCSF-PDGM-0004_nifti/UCSF-PDGM-0004_tumor_segmentation.nii.gz
    UCSF-PDGM-0429_FU003d_nifti/UCSF-PDGM-0429_FU003d_{...}.nii.gz      (a follow-up exam)

Files are matched by their suffix, so the three-digit file prefixes of some releases
(``UCSF-PDGM-004_T1.nii.gz`` inside ``UCSF-PDGM-0004_nifti``) are found too; the
``_bias`` variants and the other sequences are ignored. Case ID = folder name without
``_nifti`` with the number written with four digits; patient ID = ``UCSF-PDGM-NNNN``, shared
by the follow-ups. Labels: {0, 1 necrosis, 2 oedema, 4 enhancing} (label map ``brats2021``).

Versions 1 and 2 released six follow-up exams under IDs of their own, renamed in version 3
(from the UCSF-PDGM release notes): 315 is ``UCSF-PDGM-0433_FU007d``,
278 a follow-up of 431, 175 of 396, 138 of 429, 181 of 409, 289 of 391. An exam folder with
one of these old IDs (and no ``_FU`` suffix) keeps its case ID and joins its patient
(``PRE_V3_FOLLOWUPS``), so one patient never straddles folds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from calf.datasets import _layout, regions
from calf.datasets.base import Case
from calf.errors import CalfError

DATASET = "ucsf_pdgm"
LABEL_MAP = "brats2021"
LABELS = regions.valid_labels(LABEL_MAP)
TOKENS = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
MASK_SUFFIX = "_tumor_segmentation.nii.gz"
# pre-v3 ID -> the patient it is a follow-up of (version 3 onwards: a _FU exam of that patient)
PRE_V3_FOLLOWUPS = {315: 433, 278: 431, 175: 396, 138: 429, 181: 409, 289: 391}
EXAM = re.compile(r"^UCSF-PDGM-(?P<number>\d+)(?P<followup>_FU[0-9A-Za-z]+)?_nifti$")
EXPECTED = (
    "UCSF-PDGM-NNNN_nifti/UCSF-PDGM-NNNN_{T1,T1c,T2,FLAIR}.nii.gz "
    "and UCSF-PDGM-NNNN_tumor_segmentation.nii.gz"
)


def _holds_layout(folder: Path) -> bool:
    return any(EXAM.match(child.name) for child in _layout.subdirs(folder))


def _find(folder: Path, names: list[str], suffix: str) -> Path | None:
    """The file of ``folder`` whose name ends in ``suffix`` (case-insensitive); the one
    named after the folder when several do."""
    hits = [name for name in names if name.lower().endswith(suffix.lower())]
    if len(hits) > 1:
        exact = folder.name.removesuffix("_nifti") + suffix
        hits = [name for name in hits if name == exact]
        if len(hits) != 1:
            raise CalfError(f"{DATASET}: several files end in {suffix} in {folder}")
    return folder / hits[0] if hits else None


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every exam (baseline and follow-up) of the release that has a tumour segmentation."""
    base = _layout.check_root(DATASET, root)
    wanted = _layout.choose_modalities(DATASET, modalities, TOKENS)
    labels = _layout.parse_labels(DATASET, valid_labels, LABELS)
    found: list[tuple[Case, Path]] = []
    unlabelled = 0
    for top in _layout.find_layout_roots(base, _holds_layout):
        for exam in _layout.subdirs(top):
            match = EXAM.match(exam.name)
            if not match:
                continue
            names = _layout.files_in(exam)
            mask = _find(exam, names, MASK_SUFFIX)
            if mask is None:
                unlabelled += 1
                continue
            number = int(match["number"])
            case_id = f"UCSF-PDGM-{number:04d}" + (match["followup"] or "")
            owner = number if match["followup"] else PRE_V3_FOLLOWUPS.get(number, number)
            patient_id = f"UCSF-PDGM-{owner:04d}"
            prefix = exam.name.removesuffix("_nifti")
            images = {}
            for modality in wanted:
                suffix = f"_{TOKENS[modality]}.nii.gz"
                path = _find(exam, names, suffix)
                if path is None:
                    raise CalfError(
                        f"{DATASET} case {case_id}: missing file {exam / (prefix + suffix)}"
                    )
                images[modality] = path
            case = Case(DATASET, case_id, patient_id, images, mask, labels, LABEL_MAP)
            found.append((case, exam))
    if not found:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    return _layout.finish(DATASET, found, unlabelled)
