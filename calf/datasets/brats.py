"""BraTS (Synapse): the 2023+ naming and the 2021 naming, in one or several folders.

Layouts (the root may be the folder of case folders or up to three levels above it;
training and validation folders side by side are both read)::

    BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f}.nii.gz + ...-seg.nii.gz
    BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair}.nii.gz + ..._seg.nii.gz

2023+ names of every sub-challenge (GLI, MEN, MET, PED, SSA) are read; the last number is
the timepoint, so ``BraTS-GLI-00000-000`` and ``-001`` share the patient
``BraTS-GLI-00000``. A 2021 case is its own patient. Labels: 2021 {0, 1 necrosis,
2 oedema, 4 enhancing}; 2023 {0, 1 necrosis, 2 oedema, 3 enhancing} (BraTS 2024
post-treatment adds 4, resection cavity: pass ``valid_labels="0,1,2,3,4"``). Case
folders without a segmentation (validation data) are skipped.

Modalities by their canonical names, mapped literally: ``t1`` is the native T1 (``t1n``,
2021 ``t1``), ``t1c`` the post-contrast T1 (``t1c``, 2021 ``t1ce``), ``t2`` (``t2w``),
``flair`` (``t2f``). The authors' BraTS "T1" was the post-contrast ``-t1c``: their protocol
lists ``t1c, t2, flair`` (config/paper.yaml).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calf.datasets import _layout
from calf.datasets.base import Case

DATASET = "brats"


@dataclass(frozen=True)
class Naming:
    """One generation of BraTS file names."""

    folder: re.Pattern[str]
    sep: str
    tokens: dict[str, str]
    labels: tuple[int, ...]


NAMING_2023 = Naming(
    folder=re.compile(r"^(?P<patient>BraTS-[A-Z]+-\d+)-(?P<timepoint>\d+)$"),
    sep="-",
    tokens={"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"},
    labels=(0, 1, 2, 3),
)
NAMING_2021 = Naming(
    folder=re.compile(r"^(?P<patient>BraTS2021_\d+)$"),
    sep="_",
    tokens={"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"},
    labels=(0, 1, 2, 4),
)
NAMINGS = (NAMING_2023, NAMING_2021)
EXPECTED = (
    "BraTS-GLI-NNNNN-NNN/BraTS-GLI-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}.nii.gz (2023+) "
    "or BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz (2021)"
)


def naming_of(folder_name: str) -> Naming | None:
    """The naming generation a case folder name belongs to, if any."""
    for naming in NAMINGS:
        if naming.folder.match(folder_name):
            return naming
    return None


def _holds_layout(folder: Path) -> bool:
    return any(naming_of(child.name) for child in _layout.subdirs(folder))


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every segmented case folder of either naming."""
    base = _layout.check_root(DATASET, root)
    wanted = _layout.choose_modalities(DATASET, modalities, NAMING_2023.tokens)
    found: list[tuple[Case, Path]] = []
    unlabelled = 0
    for top in _layout.find_layout_roots(base, _holds_layout):
        for folder in _layout.subdirs(top):
            naming = naming_of(folder.name)
            if naming is None:
                continue
            case_id = folder.name
            mask = folder / f"{case_id}{naming.sep}seg.nii.gz"
            if not mask.is_file():
                unlabelled += 1
                continue
            images = {
                m: _layout.require(
                    folder / f"{case_id}{naming.sep}{naming.tokens[m]}.nii.gz",
                    f"{DATASET} case {case_id}",
                )
                for m in wanted
            }
            labels = _layout.parse_labels(DATASET, valid_labels, naming.labels)
            patient_id = naming.folder.match(case_id)["patient"]
            case = Case(DATASET, case_id, patient_id, images, mask, labels)
            found.append((case, folder))
    if not found:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    return _layout.finish(DATASET, found, unlabelled)
