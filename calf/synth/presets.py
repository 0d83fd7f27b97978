"""Tumour-size presets of the synthetic cohorts and the CALF branch each one lands in.

A preset sets the distribution of tumour sizes over a cohort. The slice-area statistics
that CALF's branch depends on (S and K of the per-axial-slice tumour areas over all
slices of all cases, tumour-free slices included) follow from it: few, small tumours
give a long right tail (large positive S); tumours spanning most of the brain's height
pile the areas up at their maximum, with a left tail of tumour-free and tapering
slices (negative S). Sizes are drawn by stratified sampling (one draw per quantile
stratum of the distribution, in random order), so a cohort's size histogram, and with
it S, varies little with the seed and the number of cases.

Measured at the defaults (64 x 64 x 32 voxels, 10 cases, seed 0, brats2021 layout;
"256": masks resized to 256 x 256 bilinearly, then > 0, as the authors did)::

    preset     branch   tumour slices   S (native)  K (native)   S (256)   K (256)
    sparse     log10        0.14          +4.98       +29.2       +4.34     +21.8
    focal      log10        0.19          +2.38        +4.6       +2.31      +4.2
    moderate   ln           0.46          +0.76       -0.98       +0.71     -1.09
    extensive  arcsine      0.72          -0.23       -1.45       -0.30     -1.44
    bulky      logit        0.76          -0.71       -1.07       -0.77     -1.02

Over seeds 0-7 and 6-16 cases, and grids from 48 x 48 x 24 to 128 x 128 x 64, S stayed
within [+3.0, +6.5], [+0.57, +0.87], [-0.46, -0.13] and [-0.92, -0.60] for sparse,
moderate, extensive and bulky (native or at 256), and within [+1.99, +2.55] for focal
(native; 6 and 16 cases at 48 x 48 x 24, 64 x 64 x 16, 128 x 128 x 64), each inside its
branch. ``focal`` is the demo's imbalanced cohort: as few tumour slices as ``sparse``
roughly, but tumours large enough (about 7 pixels in radius at 64 x 64) for small
networks to learn in a few hundred steps.
In the ``lgg_1p19q`` layout the masks cover three slices per case, so every preset
gives a sparse cohort there (log10).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Tumour size distribution of a synthetic cohort, in brain units (brain = unit ball).

    In-plane semi-axis and z semi-axis are log-normal (median, sigma of the log);
    ``z_power`` shapes the profile along z (2: ellipsoid; larger: flat-topped, so most
    of the tumour's slices show its full cross-section); ``z_jitter`` is the fraction of
    the free height within which the tumour centre moves up or down; ``lumpiness`` the
    relative amplitude of the smooth noise that roughens the boundary.
    """

    name: str
    branch: str
    description: str
    radius: float
    radius_spread: float
    half_height: float
    half_height_spread: float
    z_power: float = 2.0
    z_jitter: float = 0.5
    lumpiness: float = 0.15


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="sparse",
            branch="log10",
            description="small tumours of varied size on about 14 % of the slices (S about 5)",
            radius=0.14,
            radius_spread=0.35,
            half_height=0.14,
            half_height_spread=0.35,
        ),
        Preset(
            name="focal",
            branch="log10",
            description="mid-sized tumours on about a fifth of the slices (S about 2.7)",
            radius=0.40,
            radius_spread=0.15,
            half_height=0.20,
            half_height_spread=0.20,
            z_power=4.0,
        ),
        Preset(
            name="moderate",
            branch="ln",
            description="mid-sized tumours on about 46 % of the slices, near the authors' 41 % (S about 0.75)",
            radius=0.40,
            radius_spread=0.11,
            half_height=0.50,
            half_height_spread=0.07,
            z_power=4.5,
            z_jitter=0.45,
        ),
        Preset(
            name="extensive",
            branch="arcsine",
            description="tall tumours on about 72 % of the slices (S about -0.25)",
            radius=0.35,
            radius_spread=0.08,
            half_height=0.80,
            half_height_spread=0.05,
            z_power=6.0,
            z_jitter=0.3,
        ),
        Preset(
            name="bulky",
            branch="logit",
            description="tall, flat-topped tumours on about 76 % of the slices (S about -0.7)",
            radius=0.32,
            radius_spread=0.06,
            half_height=0.865,
            half_height_spread=0.03,
            z_power=12.0,
            z_jitter=0.25,
            lumpiness=0.10,
        ),
    )
}
