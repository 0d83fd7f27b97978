"""LGG-1p19qDeletion (TCIA): the NIfTI segmentation package, one folder per patient.

TCIA ships the images as DICOM and, separately, a NIfTI zip (``NiFTiSegmentationsEdited``)
holding per patient the post-contrast T1 registered to the T2, the T2, and a tumour mask
drawn on three axial slices (the one of largest tumour diameter and its neighbours).
Layout of the release (the root may be the ``NiFTiSegmentationsEdited`` folder or up to
three levels above it), with its real names::

    LGG-104/LGG-104_T1.nii.gz            post-contrast T1  -> canonical ``t1c``
    LGG-104/LGG-104_T2.nii.gz            T2                -> ``t2``
    LGG-210/LGG-210-Segmentation.nii.gz  mask {0, 1}

The images use an underscore and the masks a hyphen; either separator is accepted for
every file. Names vary between patients of the real package, so files are matched by
what their names contain (``Segmentation``, ``T1``, ``T2``, case-insensitive), preferring
``<case>_<token>`` or ``<case>-<token>`` when several match; messages name the release's
spelling (``LGG-104_T2.nii.gz``, ``LGG-104-Segmentation.nii.gz``). The release has no T1
(pre-contrast) and no FLAIR, so the default modalities are ``t1c`` and ``t2``. One
patient = one case; masks are binary (label map ``binary``: only region ``wt``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from calf.datasets import _layout, regions
from calf.datasets.base import Case
from calf.errors import CalfError

DATASET = "lgg_1p19q"
LABEL_MAP = "binary"
LABELS = regions.valid_labels(LABEL_MAP)
TOKENS = {"t1c": "T1", "t2": "T2"}
DEFAULT_MODALITIES = ("t1c", "t2")
MASK_TOKEN = "Segmentation"
CASE = re.compile(r"^LGG-\d+$")
NIFTI = (".nii.gz", ".nii")
# the release's separator after the case ID: images underscore, masks hyphen
SEPARATOR = {MASK_TOKEN: "-", "T1": "_", "T2": "_"}
EXPECTED = (
    "LGG-NNN/LGG-NNN_{T1,T2}.nii.gz and LGG-NNN/LGG-NNN-Segmentation.nii.gz "
    "(the NiFTiSegmentationsEdited package)"
)


def _holds_layout(folder: Path) -> bool:
    return any(CASE.match(child.name) for child in _layout.subdirs(folder))


def _pick(folder: Path, names: list[str], token: str) -> Path | None:
    """The NIfTI file whose name contains ``token``; the one named ``<case>_<token>`` or
    ``<case>-<token>`` when several do."""
    hits = [n for n in names if token.lower() in n.lower()]
    if len(hits) > 1:
        names_exact = {f"{folder.name}{sep}{token}{ext}" for sep in "_-" for ext in NIFTI}
        exact = [n for n in hits if n in names_exact]
        if len(exact) != 1:
            raise CalfError(
                f"{DATASET}: several files named like {token} in {folder}: {', '.join(hits)}"
            )
        hits = exact
    return folder / hits[0] if hits else None


def discover(
    root: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    valid_labels: Sequence[int] | str | None = None,
) -> list[Case]:
    """Every patient folder that has a segmentation."""
    base = _layout.check_root(DATASET, root)
    wanted = _layout.choose_modalities(DATASET, modalities, TOKENS, DEFAULT_MODALITIES)
    labels = _layout.parse_labels(DATASET, valid_labels, LABELS)
    found: list[tuple[Case, Path]] = []
    unlabelled = 0
    for top in _layout.find_layout_roots(base, _holds_layout):
        for folder in _layout.subdirs(top):
            if not CASE.match(folder.name):
                continue
            names = [n for n in _layout.files_in(folder) if n.lower().endswith(NIFTI)]
            mask = _pick(folder, names, MASK_TOKEN)
            if mask is None:
                unlabelled += 1
                continue
            images_only = [n for n in names if n != mask.name]
            images = {}
            for modality in wanted:
                path = _pick(folder, images_only, TOKENS[modality])
                if path is None:
                    token = TOKENS[modality]
                    expected = folder / f"{folder.name}{SEPARATOR[token]}{token}.nii.gz"
                    raise CalfError(f"{DATASET} case {folder.name}: missing file {expected}")
                images[modality] = path
            case = Case(DATASET, folder.name, folder.name, images, mask, labels, LABEL_MAP)
            found.append((case, folder))
    if not found:
        raise _layout.no_cases(DATASET, base, EXPECTED, unlabelled)
    return _layout.finish(DATASET, found, unlabelled)
