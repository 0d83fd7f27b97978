"""Synthetic glioma cohorts written in the real releases' folder layouts.

``write_cohort(layout, root, preset, n_cases, shape, seed)`` writes gzipped NIfTI volumes
(a brain-like head phantom in four MR contrasts, a glioma with the release's own labels)
exactly where the release keeps them, so that ``calf.datasets.discover`` reads the
synthetic cohort like the real one. ``PRESETS`` maps each tumour-size preset to the CALF
branch its dataset-scope statistics select. Kept light: numpy, scipy and nibabel are
imported only when a cohort is generated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from calf.synth.layouts import DATASET_OF, LAYOUTS
from calf.synth.presets import PRESETS, Preset

DEFAULT_PRESET = "moderate"
DEFAULT_CASES = 10
DEFAULT_SHAPE = (64, 64, 32)

__all__ = [
    "DATASET_OF",
    "DEFAULT_CASES",
    "DEFAULT_PRESET",
    "DEFAULT_SHAPE",
    "LAYOUTS",
    "PRESETS",
    "Preset",
    "write_cohort",
]


def write_cohort(
    layout: str,
    root: str | os.PathLike[str],
    preset: str | Preset = DEFAULT_PRESET,
    n_cases: int = DEFAULT_CASES,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = 0,
    force: bool = False,
) -> list[str]:
    """Write a synthetic cohort into ``root`` (absent, empty, or an earlier cohort, unless
    ``force``); return its case IDs.

    See ``calf.synth.cohort.write_cohort``.
    """
    from calf.synth import cohort

    return cohort.write_cohort(layout, root, preset, n_cases, shape, seed, force)
