"""What every dataset adapter yields: one ``Case`` per imaging exam."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# canonical modality names; adapters map each release's spelling onto these
MODALITIES = ("t1", "t1c", "t2", "flair")


@dataclass(frozen=True)
class Case:
    """One exam: its images (canonical modality -> NIfTI path) and its tumour mask.

    ``case_id`` is unique within a dataset; ``patient_id`` groups the exams of one person
    (follow-ups, ``_11``/``_21``) so that they never straddle folds.
    """

    dataset: str
    case_id: str
    patient_id: str
    images: dict[str, Path] = field(hash=False)
    mask: Path
    # the label values this release's masks may hold; a mask value outside this set is
    # an error naming the file
    valid_labels: tuple[int, ...] = (0, 1, 2, 3, 4)
    # the release's label convention: which labels form wt / tc / et (calf.datasets.regions)
    label_map: str = "any"
