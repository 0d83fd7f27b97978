"""Which mask labels make up each tumour region, per release generation (one table).

A *label map* names a release's label convention; every ``Case`` carries one
(``Case.label_map``), set by its adapter:

- ``brats2021``: BraTS 2021 (``BraTS2021_NNNNN``), UPENN-GBM, UCSF-PDGM; labels
  1 necrosis, 2 oedema, 4 enhancing; wt {1, 2, 4}, tc {1, 4}, et {4}.
- ``brats2023``: BraTS 2023+ (``BraTS-GLI-NNNNN-NNN``); labels 1 NETC, 2 SNFH, 3 ET;
  wt {1, 2, 3}, tc {1, 3}, et {3}.
- ``brats2024_post``: BraTS 2024 GLI post-treatment; labels 1 NETC, 2 SNFH, 3 ET,
  4 resection cavity; wt {1, 2, 3}, tc {1, 3}, et {3}.
- ``binary``: LGG-1p19qDeletion; label 1 tumour; wt = every valid label > 0 ({1}).
- ``any``: the ``folder`` adapter; wt = every valid label > 0.

The resection cavity (label 4 of ``brats2024_post``) is valid input and belongs to no
region. ``tc`` and ``et`` exist only where the release labels sub-regions. A
``valid_labels`` override widens what a mask may hold; under the BraTS conventions it
does not change the regions (a label outside them counts as background).
"""

from __future__ import annotations

from collections.abc import Iterable

from calf.errors import CalfError

REGIONS = ("wt", "tc", "et")

# label map -> (valid labels, {region: labels}); "any" takes its regions from valid_labels
LABEL_MAPS: dict[str, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]] = {
    "brats2021": ((0, 1, 2, 4), {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}),
    "brats2023": ((0, 1, 2, 3), {"wt": (1, 2, 3), "tc": (1, 3), "et": (3,)}),
    "brats2024_post": ((0, 1, 2, 3, 4), {"wt": (1, 2, 3), "tc": (1, 3), "et": (3,)}),
    "binary": ((0, 1), {}),
    "any": ((0, 1, 2, 3, 4), {}),
}


def valid_labels(label_map: str) -> tuple[int, ...]:
    """The labels a mask of this convention may hold."""
    return LABEL_MAPS[label_map][0]


def region_labels(
    label_map: str, region: str, valid: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """The mask labels that form ``region`` under ``label_map``; CalfError where the
    convention has no such region. ``valid``: the case's valid labels (used by ``any``)."""
    if region not in REGIONS:
        raise CalfError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    if label_map not in LABEL_MAPS:
        raise CalfError(f"unknown label map {label_map!r}; known: {', '.join(LABEL_MAPS)}")
    default_valid, regions = LABEL_MAPS[label_map]
    if not regions and region == "wt":  # binary conventions: anything but background
        return tuple(v for v in (valid or default_valid) if v != 0)
    if region not in regions:
        raise CalfError(
            f"region {region!r} is not defined for {label_map} masks (labels "
            f"{{{', '.join(str(v) for v in (valid or default_valid))}}}); this release has only "
            f"{', '.join(regions) or 'wt'}"
        )
    return regions[region]


# label maps of the BraTS family (BraTS releases, and UPENN-GBM and UCSF-PDGM, which ship
# BraTS labels on BraTS's grid): their metrics default to the official BraTS conventions
BRATS_FAMILY = frozenset({"brats2021", "brats2023", "brats2024_post"})


def default_preset(label_maps: Iterable[str]) -> str:
    """The conventions preset a release's family implies: ``brats`` when every label map
    is of the BraTS family, else the suite's own (``suite``)."""
    maps = set(label_maps)
    return "brats" if maps and maps <= BRATS_FAMILY else "suite"
