"""BraTS (Synapse): the 2023+ naming and the 2021 naming, in one or several folders.

Layouts (the root may be the folder of case folders or up to three levels above it;
training and validation folders side by side are both read)::

    BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f}.nii.gz + ...-seg.nii.gz
    BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair}.nii.gz + ..._seg.nii.gz

2023+ names of every sub-challenge (GLI, MEN, MET, PED, SSA) are read; the last number is
the timepoint, so ``BraTS-GLI-00005-100`` .. ``-103`` are exams of the patient
``BraTS-GLI-00005``. A 2021 case is its own patient. Case folders without a segmentation
(validation data) are skipped.

Label convention (``calf.datasets.regions``), decided per case by these rules, in order:

1. ``BraTS2021_NNNNN`` names: ``brats2021``, labels {0, 1 necrosis, 2 oedema, 4 enhancing}.
2. 2023+ names with option ``release=2023`` or ``release=2024_post``: that convention.
3. 2023+ names, ``release=auto`` (default): ``brats2024_post`` (labels {0, 1 NETC, 2 SNFH,
   3 ET, 4 resection cavity}) when the case folder sits directly in a folder named
   ``training_data1_v2`` or ``training_data_additional`` (the BraTS 2024 GLI
   post-treatment release's folders); ``brats2023`` (labels {0, 1, 2, 3}) otherwise.

Nothing else is guessed: a ``brats2023`` mask that holds label 4 stops preprocessing with
an error naming the file and this option.

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

from calf.datasets import _layout, regions
from calf.datasets.base import Case
from calf.errors import CalfError

DATASET = "brats"


@dataclass(frozen=True)
class Naming:
    """One generation of BraTS file names."""

    folder: re.Pattern[str]
    sep: str
    tokens: dict[str, str]
    label_map: str


NAMING_2023 = Naming(
    folder=re.compile(r"^(?P<patient>BraTS-[A-Z]+-\d+)-(?P<timepoint>\d+)$"),
    sep="-",
    tokens={"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"},
    label_map="brats2023",
)
NAMING_2021 = Naming(
    folder=re.compile(r"^(?P<patient>BraTS2021_\d+)$"),
    sep="_",
    tokens={"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"},
    label_map="brats2021",
)
NAMINGS = (NAMING_2023, NAMING_2021)
# folders of the BraTS 2024 GLI post-treatment release that hold labelled case folders
POST_TREATMENT_FOLDERS = ("training_data1_v2", "training_data_additional")
RELEASES = {"auto": None, "2023": "brats2023", "2024_post": "brats2024_post"}
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


def label_map_of(naming: Naming, parent: str, release: str = "auto") -> str:
    """The label convention of a case folder of ``naming`` inside folder ``parent``."""
    if naming is NAMING_2021:
        return naming.label_map
    if RELEASES[release] is not None:
        return RELEASES[release]
    return "brats2024_post" if parent in POST_TREATMENT_FOLDERS else naming.label_map


def _holds_layout(folder: Path) -> bool:
    return any(naming_of(child.name) for child in _layout.subdirs(folder))


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    release: str = "auto",
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every segmented case folder of either naming; ``release`` (``auto``, ``2023``,
    ``2024_post``) fixes the label convention of 2023+ names (module docstring)."""
    if release not in RELEASES:
        raise CalfError(f"{DATASET}: release must be one of {', '.join(RELEASES)}, got {release!r}")
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
            label_map = label_map_of(naming, top.name, release)
            labels = _layout.parse_labels(DATASET, valid_labels, regions.valid_labels(label_map))
            patient_id = naming.folder.match(case_id)["patient"]
            case = Case(DATASET, case_id, patient_id, images, mask, labels, label_map)
            found.append((case, folder))
    if not found:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    return _layout.finish(DATASET, found, unlabelled)
