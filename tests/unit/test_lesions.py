"""calf.evaluate.lesions: hand-checked cases of the BraTS HD95 / NSD definitions, the BraTS
2023 lesion-wise metrics and brats-evaluation's instance-wise metrics.

Grids are small; a "cube n at x0" is an n x n x n block starting at (x0, 2, 2). Surface
voxel: a mask voxel with a face neighbour outside; distances between voxel centres.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calf.errors import CalfError
from calf.evaluate.lesions import (
    LesionSettings,
    _deepmind_hd95,
    brats_evaluation_global,
    brats_hd95,
    brats_nsd,
    instance_wise,
    lesion_settings,
    lesion_wise,
    nsd,
)

SHAPE = (30, 12, 12)
ISO = (1.0, 1.0, 1.0)


def mask(*boxes: tuple[int, int, int, int, int, int]) -> np.ndarray:
    """Union of boxes (x0, x1, y0, y1, z0, z1), ends exclusive."""
    m = np.zeros(SHAPE, bool)
    for x0, x1, y0, y1, z0, z1 in boxes:
        m[x0:x1, y0:y1, z0:z1] = True
    return m


def cube(x0: int, n: int) -> tuple[int, int, int, int, int, int]:
    return (x0, x0 + n, 2, 2 + n, 2, 2 + n)


EMPTY = mask()
VOXEL = mask((2, 3, 2, 3, 2, 3))  # one voxel at (2, 2, 2)
LINE3 = mask((2, 5, 2, 3, 2, 3))  # three voxels x = 2, 3, 4
LINE2 = mask((2, 4, 2, 3, 2, 3))  # two voxels x = 2, 3


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    if math.isnan(b):
        return math.isnan(a)
    if math.isinf(b):
        return a == b
    return abs(a - b) <= tol


# ----------------------------------------------------------------------- HD95, NSD

HD95_CASES = [
    # both empty: NaN; exactly one empty: inf (the preset fills them)
    ("both_empty", EMPTY, EMPTY, ISO, math.nan),
    ("pred_empty", EMPTY, VOXEL, ISO, math.inf),
    ("truth_empty", VOXEL, EMPTY, ISO, math.inf),
    # one voxel each, 2 apart along axis 2: every distance is 2 (1 mm) / 6 (3 mm)
    ("voxels_2_apart", mask((2, 3, 2, 3, 4, 5)), VOXEL, ISO, 2.0),
    ("voxels_2_apart_aniso", mask((2, 3, 2, 3, 4, 5)), VOXEL, (1.0, 1.0, 3.0), 6.0),
    # pred = voxel x=2, truth = line x=2..4 (all three are surface voxels):
    # truth->pred 0, 1, 2; pred->truth 0; pooled sorted [0, 0, 1, 2]; numpy's linear
    # 95th percentile: rank 0.95 * 3 = 2.85 -> 1 + 0.85 * (2 - 1) = 1.85
    # (MONAI's larger directional percentile would be 0.95 * 2 = 1.9)
    ("line_vs_voxel", VOXEL, LINE3, ISO, 1.85),
    # the same along axis 0 at 2 mm: distances doubled -> 3.7
    ("line_vs_voxel_aniso", VOXEL, LINE3, (2.0, 1.0, 1.0), 3.7),
]


@pytest.mark.parametrize("name, pred, truth, spacing, expected", HD95_CASES, ids=[c[0] for c in HD95_CASES])
def test_brats_hd95(name, pred, truth, spacing, expected):
    assert close(brats_hd95(pred, truth, spacing), expected)


NSD_CASES = [
    # line_vs_voxel at tolerance 1: truth fractions within 1: 2/3 (distances 0, 1, 2);
    # pred: 1/1. panoptica: mean (2/3 + 1) / 2 = 5/6; MONAI: pooled (2 + 1) / (3 + 1) = 3/4
    ("line_vs_voxel", VOXEL, LINE3, ISO, 1.0, 5 / 6, 0.75),
    # at 2 mm along axis 0 the distances are 0, 2, 4: within 1 mm only the 0s:
    # panoptica (1/3 + 1) / 2 = 2/3; MONAI (1 + 1) / 4 = 1/2
    ("line_vs_voxel_aniso", VOXEL, LINE3, (2.0, 1.0, 1.0), 1.0, 2 / 3, 0.5),
    # equal masks: every distance 0 -> 1 for both
    ("equal", LINE3, LINE3, ISO, 1.0, 1.0, 1.0),
    # two voxels 2 apart at tolerance 1: no distance within -> 0 for both
    ("voxels_2_apart", mask((2, 3, 2, 3, 4, 5)), VOXEL, ISO, 1.0, 0.0, 0.0),
    # empty cases: NaN both empty, 0 one empty (both definitions)
    ("both_empty", EMPTY, EMPTY, ISO, 1.0, math.nan, math.nan),
    ("pred_empty", EMPTY, VOXEL, ISO, 1.0, 0.0, 0.0),
    ("truth_empty", VOXEL, EMPTY, ISO, 1.0, 0.0, 0.0),
]


@pytest.mark.parametrize(
    "name, pred, truth, spacing, tol, expected_brats, expected_monai", NSD_CASES, ids=[c[0] for c in NSD_CASES]
)
def test_nsd_definitions(name, pred, truth, spacing, tol, expected_brats, expected_monai):
    assert close(brats_nsd(pred, truth, spacing, tol), expected_brats)
    assert close(nsd(pred, truth, spacing, tolerance_mm=tol), expected_monai, 1e-6)  # MONAI float32


def test_brats_evaluation_global():
    # line_vs_voxel ignoring the spacing (the package's global metrics): Dice 2 * 1 / 4,
    # HD95 1.85 voxel steps even at 2 mm, NSD at 0.5 voxel: (1/3 + 1) / 2 = 2/3
    g = brats_evaluation_global(VOXEL, LINE3)
    assert close(g["dice"], 0.5) and close(g["hd95"], 1.85) and close(g["nsd"], 2 / 3)
    # disjoint non-empty masks: the zero-overlap edge case 0 / inf / 0 (brats_hd95 gives 2)
    apart = mask((2, 3, 2, 3, 4, 5))
    assert brats_evaluation_global(apart, VOXEL) == {"dice": 0.0, "hd95": math.inf, "nsd": 0.0}
    assert close(brats_hd95(apart, VOXEL, ISO), 2.0)
    assert all(math.isnan(v) for v in brats_evaluation_global(EMPTY, EMPTY).values())
    assert brats_evaluation_global(EMPTY, VOXEL) == {"dice": 0.0, "hd95": math.inf, "nsd": 0.0}


DEEPMIND_CASES = [
    # equal masks: 0
    ("equal", LINE3, LINE3, ISO, 0.0),
    # pred = voxel x=2, truth = voxels x=2, 3. Surface elements on the corner lattice:
    # truth corners at x = 1.5, 2.5, 3.5 (4 each), pred corners at x = 1.5, 2.5.
    # truth->pred: 0 for the 8 corners at x = 1.5, 2.5, 1 for the 4 at x = 3.5, which
    # hold more than 5 % of the area (each has the area of an x = 1.5 corner: one voxel
    # in its 2 x 2 x 2 cube), so the 95 % point is 1; pred->truth all 0 -> 1.
    # brats_hd95 of the same: pooled [0, 0, 1], rank 0.95 * 2 = 1.9 -> 0.9 (differs).
    ("two_vs_one", VOXEL, LINE2, ISO, 1.0),
    # the same at 2 mm along axis 0: 2 (brats_hd95: 1.8)
    ("two_vs_one_aniso", VOXEL, LINE2, (2.0, 1.0, 1.0), 2.0),
]


@pytest.mark.parametrize("name, pred, truth, spacing, expected", DEEPMIND_CASES, ids=[c[0] for c in DEEPMIND_CASES])
def test_deepmind_hd95(name, pred, truth, spacing, expected):
    assert close(_deepmind_hd95(pred, truth, spacing), expected, 1e-6)


def test_deepmind_and_brats_hd95_differ():
    assert close(brats_hd95(VOXEL, LINE2, ISO), 0.9)
    assert close(brats_hd95(VOXEL, LINE2, (2.0, 1.0, 1.0)), 1.8)
    assert _deepmind_hd95(EMPTY, LINE2, ISO) == math.inf


# ---------------------------------------------------------------------- lesion-wise

A4 = cube(2, 4)  # 64 voxels = 64 mm^3 > 50 at 1 mm
FAR_VOXEL = (25, 26, 9, 10, 9, 10)  # one voxel, far outside any dilation of A4
# the official code's fixed penalty (374 on every grid); the suite's default: see below
OFFICIAL = LesionSettings(penalty=374.0)
LESION_CASES = [
    # both empty: the official score is 0 / 0 -> NaN -> Dice 1, HD95 0
    ("both_empty", mask(), mask(), ISO, OFFICIAL, (1.0, 0.0, 0, 0, 0, 0)),
    # truth empty, one predicted component: 1 FP -> Dice 0 / 1, HD95 374 / 1
    ("truth_empty", mask(A4), mask(), ISO, OFFICIAL, (0.0, 374.0, 0, 0, 1, 0)),
    # one lesion missed: Dice 0, HD95 374 (its inf replaced), FN 1
    ("missed", mask(), mask(A4), ISO, OFFICIAL, (0.0, 374.0, 1, 0, 0, 1)),
    # one lesion hit exactly: Dice 1, HD95 0
    ("hit", mask(A4), mask(A4), ISO, OFFICIAL, (1.0, 0.0, 1, 1, 0, 0)),
    # hit + a far one-voxel FP: Dice (1 + 0) / (1 + 1) = 0.5, HD95 (0 + 374) / 2 = 187
    ("hit_and_fp", mask(A4, FAR_VOXEL), mask(A4), ISO, OFFICIAL, (0.5, 187.0, 1, 1, 1, 0)),
    # two 64-voxel truth cubes, x = 2..5 and 12..15: dilated 3 times they reach x = 8 and
    # x = 9, adjacent, so one 128-voxel lesion; pred = the first cube hits it:
    # Dice 2 * 64 / (64 + 128) = 2/3; one truth lesion, TP 1. HD95: half the truth surface
    # (the second cube's corners, x = 11.5..15.5) lies 6..10 mm along x from the pred's
    # (x <= 5.5, same y, z range), the rest 0 -> the 95 % point is between 6 and 10
    ("merged_by_dilation", mask(A4), mask(A4, cube(12, 4)), ISO, OFFICIAL, (2 / 3, (6.0, 10.0), 1, 1, 0, 0)),
    # dilated once they reach x = 6 and 11: two lesions, one hit (Dice 1, HD95 0), one
    # missed (0, 374; its dilation x = 11..16 misses the pred): Dice 1/2, HD95 187
    ("not_merged", mask(A4), mask(A4, cube(12, 4)), ISO, LesionSettings(dilation=1, penalty=374.0), (0.5, 187.0, 2, 1, 0, 1)),
    # a 27-voxel truth lesion (27 mm^3 <= 50) missed: dropped -> 0 / 0 -> Dice 1, HD95 0
    ("small_dropped", mask(), mask(cube(2, 3)), ISO, OFFICIAL, (1.0, 0.0, 0, 0, 0, 0)),
    # the same at 2 x 1 x 1 mm: 54 mm^3 > 50, kept and missed: Dice 0, HD95 374
    ("small_kept_aniso", mask(), mask(cube(2, 3)), (2.0, 1.0, 1.0), OFFICIAL, (0.0, 374.0, 1, 0, 0, 1)),
    # a 27-voxel truth missed beside a 64-voxel one hit: only the big one counts
    ("small_and_big", mask(A4), mask(A4, (20, 23, 2, 5, 2, 5)), ISO, OFFICIAL, (1.0, 0.0, 1, 1, 0, 0)),
    # a one-voxel pred 2 planes off the cube (x = 7; not 26-connected to it) lies inside
    # the lesion's dilation: a hit, not an FP; Dice 2 * 64 / (65 + 64) = 128/129. HD95:
    # truth->pred 0 (the cube's surface is in both); pred->truth: 0 on the cube, 1 or 2 mm
    # from the voxel's corners (x = 6.5, 7.5 to the cube's x = 5.5) -> between 0 and 2
    ("near_voxel_hits", mask(A4, (7, 8, 3, 4, 3, 4)), mask(A4), ISO, OFFICIAL, (128 / 129, (0.0, 2.0), 1, 1, 0, 0)),
]


@pytest.mark.parametrize("name, pred, truth, spacing, settings, expected", LESION_CASES, ids=[c[0] for c in LESION_CASES])
def test_lesion_wise(name, pred, truth, spacing, settings, expected):
    dice, hd95, n_truth, tp, fp, fn = expected
    out = lesion_wise(pred, truth, spacing, settings)
    assert close(out["lesion_dice"], dice)
    if isinstance(hd95, tuple):  # DeepMind's area-weighted HD95: bounds derived by hand
        assert hd95[0] <= out["lesion_hd95"] <= hd95[1]
    else:
        assert close(out["lesion_hd95"], hd95, 1e-6)
    counts = (out["lesions_truth"], out["lesions_tp"], out["lesions_fp"], out["lesions_fn"])
    assert counts == (n_truth, tp, fp, fn)


# -------------------------------------------------------------------- instance-wise

INSTANCE_CASES = [
    # no instance at all: NaN metrics, rq NaN (panoptica's NO_INSTANCES edge case)
    ("both_empty", mask(), mask(), dict(sq_dsc=math.nan, sq_hd95=math.nan, sq_nsd=math.nan,
     pq_dsc=math.nan, rq=math.nan, instances_tp=0, instances_fp=0, instances_fn=0)),
    # truth only: no match -> Dice 0, HD95 inf, NSD 0, rq 0; FN 1; recall 0, precision NaN
    ("pred_empty", mask(), mask(A4), dict(sq_dsc=0.0, sq_hd95=math.inf, sq_nsd=0.0, pq_dsc=0.0,
     rq=0.0, prec=math.nan, rec=0.0, instances_tp=0, instances_fp=0, instances_fn=1)),
    ("truth_empty", mask(A4), mask(), dict(sq_dsc=0.0, sq_hd95=math.inf, rq=0.0, prec=0.0,
     rec=math.nan, instances_tp=0, instances_fp=1, instances_fn=0)),
    # disjoint: 1 FP, 1 FN, no match
    ("disjoint", mask(FAR_VOXEL), mask(A4), dict(sq_dsc=0.0, sq_hd95=math.inf, rq=0.0,
     instances_tp=0, instances_fp=1, instances_fn=1)),
    # two truth cubes, pred = the first shifted by 1 along x, the second missed.
    # Matched pair: overlap 3 x 4 x 4 = 48 -> Dice 2 * 48 / 128 = 0.75. Surfaces: 56 voxels
    # each; 16 (outer x face) + 4 (inner part of the other x face) at distance 1, 36 at 0,
    # per direction: pooled 72 zeros, 40 ones -> 95th percentile 1; all within 1 -> NSD 1.
    # rq = 1 / (1 + 0 + 0.5) = 2/3, pq = 0.75 * 2/3 = 0.5
    ("one_matched_one_missed", mask(cube(3, 4)), mask(A4, cube(20, 4)), dict(sq_dsc=0.75,
     sq_hd95=1.0, sq_nsd=1.0, rq=2 / 3, pq_dsc=0.5, prec=1.0, rec=0.5, instances_truth=2,
     instances_pred=1, instances_tp=1, instances_fp=0, instances_fn=1)),
    # one 5 x 2 x 2 pred over two 2 x 2 x 2 truth cubes (x = 2..3 and 5..6): Dice with
    # each 2 * 8 / (8 + 20) = 4/7; one-to-one: one match, one FN; rq = 2/3
    ("one_pred_two_truths", mask((2, 7, 2, 4, 2, 4)), mask((2, 4, 2, 4, 2, 4), (5, 7, 2, 4, 2, 4)),
     dict(sq_dsc=4 / 7, rq=2 / 3, pq_dsc=8 / 21, instances_tp=1, instances_fp=0, instances_fn=1)),
]


@pytest.mark.parametrize("name, pred, truth, expected", INSTANCE_CASES, ids=[c[0] for c in INSTANCE_CASES])
def test_instance_wise(name, pred, truth, expected):
    out = instance_wise(pred, truth, ISO)
    for key, value in expected.items():
        assert close(out[key], value), (key, out[key], value)


def test_instance_wise_two_matches():
    # P1 = T1 (cube 4 at x = 2): Dice 1, HD95 0. P2 = x 10..12 of T2 = x 10..13 (4 x 4 x 4):
    # overlap 48 -> Dice 96 / 112 = 6/7. sq_dsc = (1 + 6/7) / 2 = 13/14, rq 1
    pred = mask(cube(2, 4), (10, 13, 2, 6, 2, 6))
    truth = mask(cube(2, 4), cube(10, 4))
    out = instance_wise(pred, truth, ISO)
    assert (out["instances_tp"], out["instances_fp"], out["instances_fn"]) == (2, 0, 0)
    assert close(out["sq_dsc"], 13 / 14) and close(out["rq"], 1.0) and close(out["pq_dsc"], 13 / 14)


def test_instance_26_connectivity():
    # two voxels touching only at a corner are one 26-connected instance
    corner = mask((2, 3, 2, 3, 2, 3), (3, 4, 3, 4, 3, 4))
    assert instance_wise(corner, corner, ISO)["instances_truth"] == 1


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize(
    "pred, truth, spacing",
    [
        (np.zeros((4, 4)), np.zeros((4, 4)), ISO),  # 2-D
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), ISO),  # shapes differ
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1.0, 0.0, 1.0)),  # zero spacing
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1.0, 1.0)),  # two numbers
    ],
)
def test_bad_input(pred, truth, spacing):
    for f in (brats_hd95, instance_wise, lesion_wise):
        with pytest.raises(CalfError):
            f(pred, truth, spacing)


@pytest.mark.parametrize("kwargs", [{"dilation": 0}, {"dilation": -1}, {"volume_threshold": -5.0}, {"penalty": math.inf},
                                    {"connectivity": 8}, {"dilation": 1.5}])
def test_bad_settings(kwargs):
    with pytest.raises(CalfError):
        LesionSettings(**kwargs)


def test_default_penalty_is_374_on_the_brats_grid_only():
    # one 64-voxel lesion missed: the lesion-wise HD95 is the penalty itself
    small = lesion_wise(mask(), mask(A4), ISO)  # on this test grid: its diagonal in mm
    assert close(small["lesion_hd95"], math.sqrt(sum(n**2 for n in mask().shape)), 1e-9)
    brats = np.zeros((240, 240, 155), bool)
    brats[100:104, 100:104, 70:74] = True
    assert lesion_wise(np.zeros_like(brats), brats, ISO)["lesion_hd95"] == 374.0
    assert lesion_wise(mask(), mask(A4), ISO, LesionSettings(penalty=100.0))["lesion_hd95"] == 100.0


def test_settings_description():
    s = LesionSettings()
    assert (s.dilation, s.volume_threshold, s.penalty, s.connectivity) == (3, 50.0, None, 26)
    description = json.loads(json.dumps(lesion_settings(s)))
    assert description["lesion_wise"]["settings"]["volume_threshold"] == 50.0
    assert description["lesion_wise"]["settings"]["volume_threshold_unit"] == "mm^3"
