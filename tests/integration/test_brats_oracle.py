"""The suite's BraTS metrics against the official ``brats-evaluation`` 0.0.10 package.

The package runs in a venv of its own (``CALF_ORACLE_VENV``, default
``~/.cache/calf/oracle/brats-evaluation-0.0.10``; made once with ``python -m venv`` and
``pip install brats-evaluation==0.0.10 'pandas<3'``, about a minute; a marker file records
success). Without network or on a failed install the test is skipped with pip's last line.
``tests/oracle/brats_evaluation_script.py`` scores synthetic NIfTI pairs in that venv, once
per session; the masks carry labels 1-3, so the package's whole-tumour region ``wt`` is the
binary mask the suite scores.

What is compared (definitions read in the package's code, see ``calf.evaluate.lesions``):

- ``global_bin_dsc`` = ``case_metrics(...)["dice"]`` (nnunet preset: NaN for two empty masks,
  as the package);
- ``global_bin_hd95``, ``global_bin_nsd``: the package ignores the spacing there, so they
  equal ``brats_hd95(p, t, (1, 1, 1))`` and ``brats_nsd(p, t, (1, 1, 1), 0.5)`` where the
  masks overlap, and ``brats_evaluation_global`` in every case (its zero-overlap edge case);
- instance metrics: ``instance_wise(p, t, spacing)`` equals the package scoring arrays with
  ``voxelspacing``; scoring the NIfTI files it applies the spacing reversed against the array
  axes (SimpleITK array order, spacing in SimpleITK order), so ``instance_wise(p, t,
  spacing[::-1])`` equals that.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from calf.evaluate.conventions import EmptyConventions
from calf.evaluate.lesions import (
    LesionSettings,
    brats_evaluation_global,
    brats_hd95,
    brats_nsd,
    instance_wise,
    lesion_wise,
)
from calf.evaluate.metrics import MetricSettings, case_metrics

SCRIPT = Path(__file__).parent / "oracle" / "brats_evaluation_script.py"
REQUIREMENTS = ("brats-evaluation==0.0.10", "pandas<3")
MARKER = "calf-oracle-ok"
SHAPE = (24, 26, 20)


def _oracle_python() -> Path:
    root = Path(os.environ.get("CALF_ORACLE_VENV", "~/.cache/calf/oracle/brats-evaluation-0.0.10"))
    root = root.expanduser()
    python = root / "bin" / "python"
    if (root / MARKER).is_file() and python.is_file():
        return python
    venv.create(root, with_pip=True, clear=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        pytest.skip(f"cannot install {' '.join(REQUIREMENTS)}: {lines[-1]}")
    (root / MARKER).write_text(" ".join(REQUIREMENTS) + "\n")
    return python


def _box(m: np.ndarray, x0, x1, y0, y1, z0, z1, label: int = 2) -> np.ndarray:
    m[x0:x1, y0:y1, z0:z1] = label
    return m


def _ball(m: np.ndarray, centre, radii, label: int = 2) -> np.ndarray:
    g = np.indices(m.shape).transpose(1, 2, 3, 0)
    m[(((g - np.array(centre)) / np.array(radii)) ** 2).sum(-1) <= 1] = label
    return m


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    z = lambda: np.zeros(SHAPE, np.uint8)  # noqa: E731
    iso, aniso, aniso2 = (1.0, 1.0, 1.0), (1.0, 1.5, 2.5), (0.8, 1.2, 3.0)
    ball_t = _ball(z(), (10, 12, 9), (5, 6, 4))
    ball_p = _ball(z(), (11, 12, 10), (5, 5, 4))
    mixed_t = _ball(_ball(z(), (10, 12, 9), (6, 7, 5), 2), (10, 12, 9), (3, 3, 2), 1)
    mixed_t = _ball(mixed_t, (9, 12, 9), (2, 2, 1), 3)
    several_t = _ball(_ball(_ball(z(), (5, 5, 5), (3, 3, 3)), (16, 8, 12), (4, 3, 3)), (8, 20, 14), (2, 3, 3))
    several_p = _ball(_ball(z(), (6, 5, 5), (3, 3, 2)), (16, 9, 12), (3, 3, 3))
    several_p = _box(several_p, 20, 22, 20, 22, 2, 4)  # a small false positive
    merged_t = _box(_box(z(), 4, 9, 4, 9, 4, 9), 11, 15, 4, 9, 4, 9)  # 2 planes apart
    merged_p = _box(z(), 4, 15, 5, 9, 4, 8)  # one component over both
    return {
        "both_empty": (z(), z(), iso),
        "pred_empty": (z(), ball_t, iso),
        "truth_empty": (ball_p, z(), aniso),
        "one_lesion": (ball_p, ball_t, iso),
        "one_lesion_aniso": (ball_p, ball_t, aniso),
        "one_lesion_aniso2": (ball_p, ball_t, aniso2),
        "mixed_labels": (ball_p, mixed_t, aniso),
        "several": (several_p, several_t, iso),
        "several_aniso": (several_p, several_t, aniso2),
        "small_fp": (_box(ball_t.copy(), 20, 21, 22, 23, 16, 17), ball_t, iso),
        "merged": (merged_p, merged_t, aniso),
        "disjoint": (_box(z(), 2, 5, 2, 5, 2, 5), _box(z(), 15, 19, 15, 19, 10, 14), iso),
        "equal_aniso": (ball_t, ball_t.copy(), aniso),
    }


@pytest.fixture(scope="session")
def oracle(tmp_path_factory):
    """(pairs, the package's results) for every pair, the script run once."""
    import nibabel as nib

    python = _oracle_python()
    folder = tmp_path_factory.mktemp("brats_oracle")
    pairs = _pairs()
    manifest = []
    for name, (pred, truth, spacing) in pairs.items():
        affine = np.diag([*spacing, 1.0])
        paths = {}
        for role, arr in (("pred", pred), ("truth", truth)):
            paths[role] = str(folder / f"{role}_{name}_00001.nii.gz")
            nib.save(nib.Nifti1Image(arr, affine), paths[role])
        manifest.append({"name": name, **paths})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = folder / "results.json"
    proc = subprocess.run(
        [str(python), str(SCRIPT), str(folder / "manifest.json"), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return pairs, json.loads(out.read_text())


NAMES = list(_pairs())


def _same(ours: float, theirs: float | None, tol: float) -> bool:
    if theirs is None or math.isnan(theirs):
        return math.isnan(ours)
    if math.isinf(theirs):
        return ours == theirs
    return abs(ours - theirs) <= tol


@pytest.mark.parametrize("name", NAMES)
def test_global_metrics(oracle, name):
    pairs, results = oracle
    pred, truth, spacing = pairs[name]
    theirs = results[name]["files"]
    assert results[name]["arrays"]["global_bin_hd95"] == theirs["global_bin_hd95"] or (
        math.isnan(theirs["global_bin_hd95"])
    )
    dice = case_metrics(pred, truth, EmptyConventions.named("nnunet"), spacing,
                        MetricSettings(lesion_metrics=False))["dice"]
    assert _same(dice, theirs["global_bin_dsc"], 1e-6)
    package = brats_evaluation_global(pred, truth)
    assert _same(package["dice"], theirs["global_bin_dsc"], 1e-9)
    assert _same(package["hd95"], theirs["global_bin_hd95"], 1e-3)
    assert _same(package["nsd"], theirs["global_bin_nsd"], 1e-3)
    p, t = pred > 0, truth > 0
    if (p & t).any():  # no edge case: the package's numbers are the raw definitions at 1 voxel
        assert _same(brats_hd95(p, t, (1.0, 1.0, 1.0)), theirs["global_bin_hd95"], 1e-3)
        assert _same(brats_nsd(p, t, (1.0, 1.0, 1.0), 0.5), theirs["global_bin_nsd"], 1e-3)
    elif p.any() != t.any():  # exactly one empty: the raw functions give the package's inf / 0
        assert brats_hd95(p, t, spacing) == theirs["global_bin_hd95"] == math.inf
        assert brats_nsd(p, t, spacing, 0.5) == theirs["global_bin_nsd"] == 0.0
    elif not p.any():  # both empty: NaN
        assert math.isnan(brats_hd95(p, t, spacing)) and math.isnan(theirs["global_bin_hd95"])


INSTANCE_KEYS = {  # ours -> the package's key, tolerance
    "sq_dsc": ("sq_dsc", 1e-6), "pq_dsc": ("pq_dsc", 1e-6), "rq": ("rq", 1e-6),
    "sq_hd95": ("sq_hd95", 1e-3), "sq_nsd": ("sq_nsd", 1e-3), "prec": ("prec", 1e-6),
    "rec": ("rec", 1e-6), "instances_tp": ("tp", 0), "instances_fp": ("fp", 0),
    "instances_fn": ("fn", 0), "instances_truth": ("n_ref_instances", 0),
    "instances_pred": ("n_pred_instances", 0),
}


@pytest.mark.parametrize("route", ["arrays", "files"])
@pytest.mark.parametrize("name", NAMES)
def test_instance_metrics(oracle, name, route):
    pairs, results = oracle
    pred, truth, spacing = pairs[name]
    # the files route applies the spacing reversed against the array axes (module doc)
    ours = instance_wise(pred, truth, spacing if route == "arrays" else spacing[::-1])
    theirs = results[name][route]
    for key, (their_key, tol) in INSTANCE_KEYS.items():
        assert _same(float(ours[key]), theirs[their_key], tol), (key, ours[key], theirs[their_key])


def test_files_route_reverses_spacing(oracle):
    """On an anisotropic pair the package's NIfTI route differs from its array route: the
    spacing is applied to the wrong axes (a bug of panoptica 2.1.7's SimpleITK reader)."""
    pairs, results = oracle
    files, arrays = results["one_lesion_aniso2"]["files"], results["one_lesion_aniso2"]["arrays"]
    assert abs(files["sq_hd95"] - arrays["sq_hd95"]) > 1e-3


LESION_CASES = [
    # BraTS-2023-Metrics metrics.py, get_LesionWiseScores / get_LesionWiseResults (GLI:
    # dilation 3, threshold 50 mm^3), as read: both empty -> 0 / 0 -> Dice 1, HD95 0
    ("both_empty", 1.0, 0.0, (0, 0, 0, 0)),
    # pred_empty: the ball (radii 5, 6, 4: > 50 voxels) missed -> Dice 0, HD95 374, FN 1
    ("pred_empty", 0.0, 374.0, (1, 0, 0, 1)),
    # truth_empty: one predicted component, a false positive -> 0 / 1 and 374 / 1
    ("truth_empty", 0.0, 374.0, (0, 0, 1, 0)),
    # merged: the two truth boxes (2 planes apart) are one lesion after dilation, hit by the
    # single predicted box: TP 1, no FN, no FP
    ("merged", None, None, (1, 1, 0, 0)),
    # disjoint (the pred 10 voxels off, beyond the dilation): 1 FN + 1 FP ->
    # Dice 0 / 2, HD95 (374 + 374) / 2
    ("disjoint", 0.0, 374.0, (1, 0, 1, 1)),
]


@pytest.mark.parametrize("name, dice, hd95, counts", LESION_CASES, ids=[c[0] for c in LESION_CASES])
def test_lesion_wise_as_published(name, dice, hd95, counts):
    pred, truth, spacing = _pairs()[name]
    out = lesion_wise(pred, truth, spacing, LesionSettings(penalty=374.0))  # the code's 374
    if dice is not None:
        assert _same(out["lesion_dice"], dice, 1e-9) and _same(out["lesion_hd95"], hd95, 1e-9)
    assert (out["lesions_truth"], out["lesions_tp"], out["lesions_fp"], out["lesions_fn"]) == counts


@pytest.mark.parametrize("preset", ["brats", "suite", "nnunet"])
@pytest.mark.parametrize("name", ["both_empty", "pred_empty", "truth_empty"])
def test_edge_cases_map_through_the_preset(oracle, name, preset):
    """Where the package leaves a metric undefined (NaN for two empty masks, HD95 inf for
    one), the suite's value is the preset's: the package's edge case, mapped."""
    pairs, results = oracle
    pred, truth, spacing = pairs[name]
    theirs = results[name]["files"]
    conv = EmptyConventions.named(preset)
    ours = case_metrics(pred, truth, conv, spacing, MetricSettings(lesion_metrics=False))
    if name == "both_empty":
        assert all(math.isnan(theirs[k]) for k in ("global_bin_dsc", "global_bin_hd95"))
        expected = (conv.dice_both_empty, conv.hd95_both_empty, conv.nsd_both_empty)
    else:
        assert theirs["global_bin_dsc"] == 0 and theirs["global_bin_hd95"] == math.inf
        assert theirs["global_bin_nsd"] == 0
        expected = (0.0, conv.one_empty_hd95(SHAPE, spacing), conv.nsd_one_empty)
    for key, value in zip(("dice", "hd95", "nsd"), expected):
        assert _same(ours[key], value, 1e-9), (key, ours[key], value)
    if preset == "brats":  # off BraTS's grid the one-empty HD95 is the diagonal, never 374
        assert ours["hd95"] != 374.0
