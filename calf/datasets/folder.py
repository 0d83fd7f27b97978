"""Any cohort laid out as one folder per case with canonical file names::

    <root>/<case>/{t1,t1c,t2,flair}.nii.gz   (any subset; .nii also read)
    <root>/<case>/seg.nii.gz                 tumour mask, label > 0 is tumour

The case folder name is the case ID and, unless a patient mapping says otherwise, also
the patient ID. A mapping is a dict or a CSV file with columns ``case_id, patient_id``.
Subfolders without ``seg.nii.gz`` are not cases. Valid labels default to {0, 1, 2, 3, 4}
(binary and both BraTS conventions); pass ``valid_labels`` to narrow them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from calf.datasets import _layout
from calf.datasets.base import MODALITIES, Case
from calf.errors import CalfError

DATASET = "folder"
LABELS = (0, 1, 2, 3, 4)
MASK_NAMES = ("seg.nii.gz", "seg.nii")
EXPECTED = "<case>/{t1,t1c,t2,flair}.nii.gz with <case>/seg.nii.gz"


def _nifti(folder: Path, stem: str, names: set[str]) -> Path | None:
    for name in (f"{stem}.nii.gz", f"{stem}.nii"):
        if name in names:
            return folder / name
    return None


def read_patients(patients: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """A case -> patient mapping from a dict or a CSV file with ``case_id, patient_id``."""
    if patients is None or patients == "":
        return {}
    if isinstance(patients, Mapping):
        return {str(k): str(v) for k, v in patients.items()}
    path = Path(patients)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"case_id", "patient_id"} - set(reader.fieldnames or ())
            if missing:
                raise CalfError(
                    f"{path}: patient mapping lacks column(s) {', '.join(sorted(missing))}"
                )
            return {row["case_id"]: row["patient_id"] for row in reader if row["case_id"]}
    except OSError as err:
        raise CalfError(f"{path}: cannot read the patient mapping ({err.strerror or err})") from err


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    patients: Mapping[str, str] | str | Path | None = None,
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every subfolder of ``root`` that holds ``seg.nii.gz``.

    Default modalities: those of t1, t2 and flair that the cohort has (every canonical one
    it has when it has none of these); each chosen modality must exist in every case.
    """
    base = _layout.check_root(DATASET, root)
    labels = _layout.parse_labels(DATASET, valid_labels, LABELS)
    mapping = read_patients(patients)
    labelled: list[tuple[Path, set[str], Path]] = []
    unlabelled = 0
    for folder in _layout.subdirs(base):
        names = set(_layout.files_in(folder))
        mask = next((folder / n for n in MASK_NAMES if n in names), None)
        if mask is None:
            unlabelled += 1
            continue
        labelled.append((folder, names, mask))
    if not labelled:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    present = {m for folder, names, _ in labelled for m in MODALITIES if _nifti(folder, m, names)}
    default = tuple(m for m in _layout.AUTHORS_MODALITIES if m in present) or tuple(
        m for m in MODALITIES if m in present
    )
    if not default:
        folder = labelled[0][0]
        raise CalfError(
            f"{DATASET} case {folder.name}: no image file ({', '.join(MODALITIES)}).nii.gz in {folder}"
        )
    wanted = _layout.choose_modalities(DATASET, modalities, MODALITIES, default)
    found: list[tuple[Case, Path]] = []
    for folder, names, mask in labelled:
        images = {}
        for modality in wanted:
            path = _nifti(folder, modality, names)
            if path is None:
                raise CalfError(
                    f"{DATASET} case {folder.name}: missing file {folder / (modality + '.nii.gz')}"
                )
            images[modality] = path
        case = Case(
            DATASET, folder.name, mapping.get(folder.name, folder.name), images, mask, labels
        )
        found.append((case, folder))
    return _layout.finish(DATASET, found, unlabelled)
