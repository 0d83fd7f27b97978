"""Dataset adapters: find every case of a release in its real folder layout.

``discover(dataset, root, modalities=None, **options)`` returns the release's cases as
``Case`` records sorted by case ID. Adapters (one module each, imported on first use):

- ``upenn_gbm``: TCIA UPENN-GBM NIfTI release; option ``segmentation`` =
  ``automated`` (default) | ``expert`` | ``expert_or_automated``
- ``ucsf_pdgm``: TCIA UCSF-PDGM v5, follow-up exams (and the six pre-v3 follow-up IDs)
  grouped with their patient
- ``brats``: BraTS 2023+ (``BraTS-GLI-00000-000``, BraTS 2024 post-treatment included) and
  2021 (``BraTS2021_00000``) naming; option ``release`` = ``auto`` (default) | ``2023`` |
  ``2024_post``
- ``lgg_1p19q``: TCIA LGG-1p19qDeletion NIfTI package (``t1c`` and ``t2`` only)
- ``folder``: ``<case>/{t1,t1c,t2,flair}.nii.gz`` + ``<case>/seg.nii.gz``; option
  ``patients`` (case -> patient mapping, dict or CSV)

Every adapter takes ``valid_labels`` to override the release's label set. Each case names
its label convention (``Case.label_map``); ``calf.datasets.regions`` maps it to the labels
of the regions ``wt``, ``tc`` and ``et``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from calf.datasets.base import MODALITIES, Case
from calf.errors import CalfError

ADAPTERS = ("upenn_gbm", "ucsf_pdgm", "brats", "lgg_1p19q", "folder")

__all__ = ["ADAPTERS", "MODALITIES", "Case", "adapter_options", "discover"]


def _adapter(dataset: str):
    if dataset not in ADAPTERS:
        raise CalfError(f"unknown dataset {dataset!r}; known: {', '.join(ADAPTERS)}")
    return importlib.import_module(f"calf.datasets.{dataset}")


def adapter_options(dataset: str) -> tuple[str, ...]:
    """The keyword options a dataset's adapter accepts."""
    params = inspect.signature(_adapter(dataset).discover).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def discover(
    dataset: str,
    root: str | Path,
    modalities: Sequence[str] | None = None,
    **options: Any,
) -> list[Case]:
    """Every case of ``dataset`` under ``root``; CalfError (one line) on a bad root,
    an unknown option, a missing modality file or two cases with one ID."""
    module = _adapter(dataset)
    known = adapter_options(dataset)
    for key in options:
        if key not in known:
            raise CalfError(f"{dataset}: unknown option {key!r}; known: {', '.join(known)}")
    return module.discover(root, modalities, **options)
