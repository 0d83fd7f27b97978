"""calf.evaluate and ``calf evaluate``: MONAI metrics with empty-mask conventions, the
batch-pooled Dice, and end-to-end evaluation of checkpoints on real slice stores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from calf.cli import main
from calf.datasets.base import Case
from calf.errors import CalfError
from calf.evaluate import (
    CASE_COLUMNS,
    SLICE_COLUMNS,
    EmptyConventions,
    Labels,
    batch_pooled_dice,
    case_metrics,
    evaluate,
    read_conventions,
    sampler_order,
    slice_counts,
)
from calf.evaluate.companion import read_companion
from calf.evaluate.metrics import MetricSettings
from calf.evaluate.overlays import read_overlay_arrays, write_overlay_arrays
from calf.models import build_model
from calf.preprocess import PreprocessSettings, preprocess
from calf.split import write_subjects
from calf.store import SliceStore
from calf.train.checkpoint import rng_state, save_checkpoint

NAN = float("nan")
NO_LESIONS = MetricSettings(lesion_metrics=False)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def _cube(lo: tuple[int, ...], side: int, shape=(8, 8, 8)) -> np.ndarray:
    v = np.zeros(shape, dtype=bool)
    v[tuple(slice(a, a + side) for a in lo)] = True
    return v


# ------------------------------------------------------------------ metrics, known answers


def test_two_overlapping_cubes():
    # 4^3 cubes shifted by 2 along x: overlap 2 x 4 x 4 = 32 of 64 each, 512 voxels in all
    m = case_metrics(_cube((2, 0, 0), 4), _cube((0, 0, 0), 4))
    assert m["dice"] == pytest.approx(2 * 32 / (64 + 64))
    assert m["iou"] == pytest.approx(32 / 96)
    assert m["sensitivity"] == pytest.approx(32 / 64)
    assert m["precision"] == pytest.approx(32 / 64)
    assert m["specificity"] == pytest.approx((512 - 96) / (512 - 64))
    assert (m["tumour_voxels"], m["predicted_voxels"]) == (64, 64)


def test_confusion_metrics_by_hand_counts():
    truth = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    pred = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    # tp 2 (0,0),(1,0); fp 2 (1,1),(2,3); fn 1 (0,1); tn 11
    m = case_metrics(pred[..., None], truth[..., None])  # one slice
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(11 / 13)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["iou"] == pytest.approx(2 / 5)
    np.testing.assert_array_equal(slice_counts(pred[None], truth[None]), [[2, 2, 1, 11]])


@pytest.mark.parametrize(
    "axis, shift, spacing, expected",
    [
        (0, 3, None, 3.0),  # every voxel of a one-voxel sheet is 3 steps from the other
        (0, 1, None, 1.0),
        (0, 3, (2.5, 1.0, 1.0), 7.5),  # 3 steps of 2.5 mm
        (2, 2, (0.5, 0.5, 3.0), 6.0),
        (1, 2, (0.5, 0.5, 3.0), 1.0),
    ],
)
def test_hd95_of_shifted_sheets(axis, shift, spacing, expected):
    truth = np.zeros((10, 10, 10), dtype=bool)
    index = [slice(2, 8)] * 3
    index[axis] = 1
    truth[tuple(index)] = True
    pred = np.roll(truth, shift, axis=axis)
    assert case_metrics(pred, truth, spacing=spacing)["hd95"] == pytest.approx(expected)


def test_hd95_single_voxels_3_4_5():
    truth, pred = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    truth[0, 0, 4], pred[3, 4, 4] = True, True
    assert case_metrics(pred, truth)["hd95"] == pytest.approx(5.0)


EMPTY, CUBE = np.zeros((8, 8, 8), bool), _cube((0, 0, 0), 4)
DIAGONAL_8 = math.sqrt(3 * 8**2)  # the 8 x 8 x 8 grid's diagonal, one per voxel


@pytest.mark.parametrize(
    "pred, truth, expected",
    [
        # both empty: conventions for dice, iou, hd95, nsd, sensitivity, precision
        (
            EMPTY,
            EMPTY,
            dict(dice=1, iou=1, hd95=0, nsd=1, sensitivity=NAN, specificity=1, precision=NAN),
        ),
        # empty truth, 64 predicted voxels: Dice 0 (defined), hd95 the grid's diagonal
        (
            CUBE,
            EMPTY,
            dict(dice=0, iou=0, hd95=DIAGONAL_8, nsd=0, sensitivity=NAN,
                 specificity=448 / 512, precision=0),
        ),
        # tumour missed entirely
        (
            EMPTY,
            CUBE,
            dict(dice=0, iou=0, hd95=DIAGONAL_8, nsd=0, sensitivity=0, specificity=1,
                 precision=NAN),
        ),
    ],
    ids=["both-empty", "empty-truth", "empty-prediction"],
)
def test_default_empty_conventions(pred, truth, expected):
    m = case_metrics(pred, truth)
    for key, value in expected.items():
        assert _same(m[key], value), (key, m[key], value)


def test_other_conventions_apply():
    conv = EmptyConventions.from_dict(
        {
            "dice_both_empty": None,
            "iou_both_empty": "nan",
            "hd95_both_empty": None,
            "hd95_one_empty": "NaN",
            "sensitivity_both_empty": 1,
            "precision_empty_prediction": 0.0,
        }
    )
    both = case_metrics(EMPTY, EMPTY, conv)
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "hd95"))
    assert both["sensitivity"] == 1.0 and both["precision"] == 0.0
    assert math.isnan(case_metrics(CUBE, EMPTY, conv)["hd95"])
    full = np.ones((4, 4, 4), bool)  # truth fills the volume: no negatives
    assert math.isnan(case_metrics(full, full)["specificity"])
    conv = EmptyConventions(specificity_empty_background=1.0)
    assert case_metrics(full, full, conv)["specificity"] == 1.0


def test_conventions_dict_round_trip_and_file(tmp_path):
    defaults = EmptyConventions().to_dict()
    assert defaults == {
        "preset": "suite",
        "dice_both_empty": 1.0,
        "iou_both_empty": 1.0,
        "hd95_both_empty": 0.0,
        "hd95_one_empty": "diagonal",
        "nsd_both_empty": 1.0,
        "nsd_one_empty": 0.0,
        "sensitivity_both_empty": None,
        "sensitivity_empty_truth": None,
        "specificity_empty_background": None,
        "precision_empty_prediction": None,
        "overrides": [],
    }
    keys = {k: v for k, v in defaults.items() if k != "overrides"}
    assert EmptyConventions.from_dict(keys).to_dict()["overrides"] == sorted(set(keys) - {"preset"})
    path = tmp_path / "conv.json"
    path.write_text(json.dumps({"hd95_one_empty": 100}))
    conv = read_conventions(path)
    assert conv.hd95_one_empty == 100.0 and conv.label() == "suite+hd95_one_empty"
    assert read_conventions(None) == EmptyConventions()
    assert read_conventions(None, "brats") == EmptyConventions.named("brats")


# --------------------------------------------------------------- conventions presets

BRATS_SHAPE = (240, 240, 155)


@pytest.mark.parametrize(
    "preset, pred, truth, expected",
    [
        # BraTS 2023 code: both empty Dice 1, HD95 0, sensitivity 1; specificity tn/(tn+fp)
        ("brats", EMPTY, EMPTY, dict(dice=1, hd95=0, nsd=1, sensitivity=1, specificity=1)),
        # prediction without truth: sensitivity tp / (tp + fn + eps) = 0; HD95 off-grid: diagonal
        ("brats", CUBE, EMPTY, dict(dice=0, hd95=DIAGONAL_8, sensitivity=0, precision=0)),
        ("brats", EMPTY, CUBE, dict(dice=0, hd95=DIAGONAL_8, sensitivity=0, precision=NAN)),
        # nnU-Net: NaN wherever undefined; Dice 0 with one empty is defined
        ("nnunet", EMPTY, EMPTY, dict(dice=NAN, iou=NAN, hd95=NAN, nsd=NAN, sensitivity=NAN)),
        ("nnunet", CUBE, EMPTY, dict(dice=0, hd95=NAN, nsd=NAN, sensitivity=NAN, precision=0)),
        ("suite", EMPTY, EMPTY, dict(dice=1, hd95=0, nsd=1, sensitivity=NAN)),
    ],
)
def test_presets_fill_undefined_cells(preset, pred, truth, expected):
    m = case_metrics(pred, truth, EmptyConventions.named(preset), spacing=None,
                     settings=NO_LESIONS)
    for key, value in expected.items():
        assert _same(m[key], value), (key, m[key], value)


@pytest.mark.parametrize(
    "shape, spacing, expected",
    [
        (BRATS_SHAPE, (1.0, 1.0, 1.0), 374.0),  # the BraTS grid: the challenge's number
        ((155, 240, 240), (1.0, 1.0, 1.0), 374.0),  # in another axis order
        # same voxels at 2 mm: not BraTS's grid, its diagonal in mm
        (BRATS_SHAPE, (2.0, 2.0, 2.0), 2 * math.sqrt(240**2 + 240**2 + 155**2)),
        ((64, 64, 24), (3.75, 3.75, 155 / 24), math.sqrt(240**2 + 240**2 + 155**2)),
    ],
)
def test_brats_penalty_only_on_the_brats_grid(shape, spacing, expected):
    brats = EmptyConventions.named("brats")
    assert brats.one_empty_hd95(shape, spacing) == pytest.approx(expected)
    # the suite's preset: always the diagonal; a number set by hand: everywhere
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    assert EmptyConventions().one_empty_hd95(shape, spacing) == pytest.approx(diagonal)
    fixed = EmptyConventions.from_dict({"hd95_one_empty": 373.13}, preset="brats")
    assert fixed.one_empty_hd95(shape, spacing) == 373.13


def test_preset_names_and_overrides():
    brats = EmptyConventions.from_dict({"preset": "brats", "precision_empty_prediction": 0})
    assert brats.preset == "brats" and brats.precision_empty_prediction == 0.0
    assert brats.label() == "brats+precision_empty_prediction"
    record = brats.to_dict()
    assert record["hd95_one_empty"] == 374.0
    assert "240 x 240 x 155" in record["hd95_one_empty_applies_on"]
    with pytest.raises(CalfError, match="preset 'mine'"):
        EmptyConventions.from_dict({"preset": "mine"})
    with pytest.raises(CalfError, match="unknown conventions preset 'x'"):
        EmptyConventions.named("x")


# ------------------------------------------------------------------- NSD


@pytest.mark.parametrize(
    "shift, spacing, tolerance, expected",
    [
        (0, None, 1.0, 1.0),  # identical masks
        (3, None, 3.0, 1.0),  # every surface voxel exactly 3 from the other: within 3
        (3, None, 2.9, 0.0),  # ... and outside 2.9
        (2, (1.5, 1.0, 1.0), 3.0, 1.0),  # 2 steps of 1.5 mm = 3 mm
        (2, (1.5, 1.0, 1.0), 2.0, 0.0),
    ],
)
def test_nsd_of_shifted_sheets(shift, spacing, tolerance, expected):
    from calf.evaluate.metrics import MetricSettings

    truth = np.zeros((10, 10, 10), dtype=bool)
    truth[1, 2:8, 2:8] = True  # a one-voxel sheet: all of it is surface
    pred = np.roll(truth, shift, axis=0)
    settings = MetricSettings(nsd_tolerance_mm=tolerance, lesion_metrics=False)
    m = case_metrics(pred, truth, spacing=spacing, settings=settings)
    assert m["nsd"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "data, named",
    [
        ({"dice_empty": 1}, "'dice_empty'"),
        ({"dice_both_empty": "one"}, "dice_both_empty"),
        ({"dice_both_empty": True}, "dice_both_empty"),
        ({"iou_both_empty": 1.5}, "iou_both_empty"),
        ({"hd95_one_empty": -1}, "hd95_one_empty"),
        ({"hd95_one_empty": float("inf")}, "hd95_one_empty"),
        ([1, 2], "JSON object"),
    ],
)
def test_conventions_reject_bad_keys_and_values(data, named, tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(data))  # inf is written as Infinity, which json reads back
    with pytest.raises(CalfError, match=named) as err:
        read_conventions(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_conventions_file_errors(tmp_path):
    with pytest.raises(CalfError, match="not found"):
        read_conventions(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CalfError, match="bad.json"):
        read_conventions(tmp_path / "bad.json")


def test_lesion_metrics_can_be_switched_off():
    m = case_metrics(CUBE, CUBE, settings=NO_LESIONS)
    assert all(math.isnan(m[k]) for k in ("lesion_dice", "lesion_hd95", "sq_dsc", "pq_dsc"))
    m = case_metrics(CUBE, CUBE)  # one lesion, found exactly
    assert (m["lesion_dice"], m["lesion_hd95"], m["lesions_tp"], m["lesions_fp"]) == (1, 0, 1, 0)


def test_metrics_reject_bad_arrays():
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((4, 4, 1)), np.zeros((4, 5, 1)))
    with pytest.raises(ValueError, match="3-D"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(CUBE, CUBE, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(CUBE, CUBE, spacing=(1.0, 0.0, 1.0))


# ------------------------------------------------------------------- batch-pooled Dice


def _slices(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["tp", "fp", "fn", "tn"]).assign(
        case_id="c", modality="t1", slice=range(len(rows))
    )


HAND = [(2, 1, 0, 9), (0, 0, 3, 9), (0, 0, 0, 12), (0, 0, 0, 12), (1, 0, 1, 10)]


def test_sampler_order_is_torch_randperm_seed_0():
    # torch.randperm(5) with a generator seeded 0, as the authors' sampler drew it
    assert sampler_order(5).tolist() == [4, 0, 1, 3, 2]
    # 2 replicas pad to 6 by repeating the head (4); rank r takes every 2nd from r
    assert sampler_order(5, replicas=2, rank=0).tolist() == [4, 1, 2]
    assert sampler_order(5, replicas=2, rank=1).tolist() == [0, 3, 4]


@pytest.mark.parametrize(
    "batch_size, replicas, expected",
    [
        # drawn 4, 0 | 1, 3 | 2: (tp 3, fp 1, fn 1) -> 6/8; (0, 0, 3) -> 0; empty -> 1
        (2, 1, (0.75 + 0 + 1) / 3),
        # one batch pools all, whatever the order: tp 3, fp 1, fn 4 -> 6/11
        (32, 1, 6 / 11),
        # batches of 1, order irrelevant: 4/5, 0, 1, 1, 2/3
        (1, 1, (0.8 + 0 + 1 + 1 + 2 / 3) / 5),
        # rank 0 draws 4, 1 | 2 -> (1/3 + 1) / 2; rank 1 draws 0, 3 | 4 -> (4/5 + 2/3) / 2
        (2, 2, ((1 / 3 + 1) / 2 + (4 / 5 + 2 / 3) / 2) / 2),
    ],
)
def test_batch_pooled_dice_by_hand(batch_size, replicas, expected):
    value = batch_pooled_dice(_slices(HAND), batch_size=batch_size, replicas=replicas)
    assert value == pytest.approx(expected, abs=1e-12)


def _authors_dice(counts: np.ndarray, batch: torch.Tensor) -> float:
    """Their ``dice_similarity_coefficient`` on one batch: 2 sum(p y) / (sum p + sum y)."""
    tp, fp, fn = counts[batch.numpy(), :3].sum(axis=0)
    union = (tp + fp) + (tp + fn)
    return 1.0 if union == 0 else 2.0 * tp / union


@pytest.mark.parametrize(
    "n, replicas, seed",
    [(1000, 1, 0), (57, 1, 0), (101, 3, 0), (5, 8, 0), (101, 2, 12345)],
)
def test_batches_are_those_of_torch_distributed_sampler(n, replicas, seed):
    from torch.utils.data import DataLoader, DistributedSampler

    rng = np.random.default_rng(n)
    tp = rng.integers(0, 50, n) * (rng.random(n) < 0.5)  # about half the slices tumour-free
    counts = np.stack(
        [tp, rng.integers(0, 20, n) * (rng.random(n) < 0.3), rng.integers(0, 20, n) * (tp > 0)],
        axis=1,
    )
    table = pd.DataFrame(counts, columns=["tp", "fp", "fn"]).assign(tn=1000)
    dataset = list(range(n))
    rank_means = []
    for rank in range(replicas):
        sampler = DistributedSampler(
            dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed
        )
        batches = list(DataLoader(dataset, batch_size=32, sampler=sampler))
        drawn = torch.cat(batches).numpy()
        assert drawn.tolist() == sampler_order(n, seed, replicas, rank).tolist()
        rank_means.append(sum(_authors_dice(counts, b) for b in batches) / len(batches))
    # Solver.validate: each rank's sum over batches / len(loader), all_reduce SUM / world size
    expected = sum(rank_means) / replicas
    got = batch_pooled_dice(table, batch_size=32, seed=seed, replicas=replicas)
    assert got == pytest.approx(expected, abs=1e-12)


def _toy_slices() -> pd.DataFrame:
    """60 cases x 3 modalities x 155 slices in slice-CSV order: tumour in a run of 50-70
    middle slices (Dice 0.9 there), a few false-positive pixels on 10 % of empty slices."""
    rng = np.random.default_rng(10)
    rows = []
    for _case in range(60):
        lo = int(rng.integers(40, 60))
        hi = lo + int(rng.integers(50, 70))
        for _modality in range(3):
            for z in range(155):
                if lo <= z < hi:
                    area = int(rng.integers(200, 2000))
                    tp, fp = int(area * 0.9), int(area * 0.1)
                    fn = area - tp
                else:
                    tp = fn = 0
                    fp = int(rng.integers(1, 30)) if rng.random() < 0.1 else 0
                rows.append((tp, fp, fn, 256 * 256 - tp - fp - fn))
    return _slices(rows)


def test_authors_order_differs_from_consecutive_as_the_issue_measured():
    table = _toy_slices()
    counts = table[["tp", "fp", "fn"]].to_numpy(dtype=float)
    # the old, consecutive form: 32 slices in file order, so whole batches of one case's
    # tumour-free slices, where a few false-positive pixels give Dice 0
    pooled = np.add.reduceat(counts, np.arange(0, len(counts), 32), axis=0)
    union = 2 * pooled[:, 0] + pooled[:, 1] + pooled[:, 2]
    consecutive = np.where(union > 0, 2 * pooled[:, 0] / np.maximum(union, 1), 1.0).mean()
    tp, fp, fn = counts.sum(axis=0)
    overall = 2 * tp / (2 * tp + fp + fn)
    shuffled = batch_pooled_dice(table)
    assert consecutive == pytest.approx(0.533, abs=0.005)  # the issue: 0.56
    assert shuffled == pytest.approx(0.899, abs=0.005)  # the issue: 0.90
    # a shuffled batch of 32 almost surely holds tumour, so it pools like the whole set
    assert shuffled == pytest.approx(overall, abs=0.002)


def test_batch_pooled_dice_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        batch_pooled_dice(_slices([(1, 0, 0, 1)]), batch_size=0)
    with pytest.raises(ValueError, match="tn"):
        batch_pooled_dice(_slices([(1, 0, 0, 1)]).drop(columns="tn"))
    with pytest.raises(ValueError, match="no rows"):
        batch_pooled_dice(_slices([]))
    with pytest.raises(ValueError, match="replicas"):
        batch_pooled_dice(_slices([(1, 0, 0, 1)]), replicas=0)


# ------------------------------------------------------------------- end to end

SIZE, DEPTH = 32, 5
SIDES = {"c0": 4, "c1": 6, "c2": 3, "c3": 0}  # tumour square side in slices 1..3 (c3: none)


def _write_case(root: Path, dataset: str, case_id: str, side: int, depth: int, seed: int) -> Case:
    folder = root / dataset / case_id
    folder.mkdir(parents=True)
    seg = np.zeros((SIZE, SIZE, depth), dtype=np.uint8)
    seg[8 : 8 + side, 10 : 10 + side, 1:4] = 1
    nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
    rng = np.random.default_rng(seed)
    images = {}
    for modality in ("t1", "flair"):
        images[modality] = folder / f"{modality}.nii.gz"
        data = rng.normal(size=seg.shape).astype(np.float32) + 3 * seg
        nib.save(nib.Nifti1Image(data, np.eye(4)), images[modality])
    return Case(dataset, case_id, f"p-{case_id}", images, folder / "seg.nii.gz")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Store 'alpha' (4 cases of 32 x 32 x 5), store 'beta' (1 case), splits files."""
    root = tmp_path_factory.mktemp("evaluate")
    settings = PreprocessSettings(size=SIZE, mask_resize="nearest")  # areas = side ** 2
    cases = [_write_case(root, "alpha", c, s, DEPTH, i) for i, (c, s) in enumerate(SIDES.items())]
    preprocess(cases, root / "alpha-store", settings, progress=False)
    preprocess(
        [_write_case(root, "beta", "b0", 5, 4, 9)], root / "beta-store", settings, progress=False
    )
    splits = root / "splits_final.json"
    splits.write_text(
        json.dumps(
            [
                {"train": ["c0", "c2"], "val": ["c1", "c3"]},
                {"train": ["c1", "c3"], "val": ["c0", "c2"]},
            ]
        )
    )
    pooled = root / "pooled_splits.json"
    pooled.write_text(
        json.dumps(
            [{"train": ["alpha/c0", "alpha/c2", "alpha/c3"], "val": ["beta/b0", "alpha/c1"]}]
        )
    )
    return {
        "root": root,
        "alpha": root / "alpha-store",
        "beta": root / "beta-store",
        "splits": splits,
        "pooled": pooled,
    }


def _make_run(
    root: Path,
    name: str,
    bias: float | None = None,
    status: str = "complete",
    checkpoint: bool = True,
) -> Path:
    """A run directory in the training contract's format with a unet of width 0.125.

    ``bias`` set: the head's weights are zeroed, so every logit equals ``bias``; else the
    head's bias is shifted so that about half the pixels of noise images are tumour.
    """
    torch.manual_seed(0)
    model = build_model("unet", width=0.125).eval()
    head = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        if bias is not None:
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, bias)
            assert (model(torch.rand(2, 1, SIZE, SIZE)) == bias).all()
        else:
            head.bias -= model(torch.rand(4, 1, SIZE, SIZE)).median()
    run = root / name
    run.mkdir()
    if checkpoint:  # the training loop's own writer and layout
        params = {"model": "unet", "width": 0.125, "model_kwargs": {}, "loss": "bce"}
        state = {
            "epoch": 2,
            "model_state": model.state_dict(),
            "optimizer_state": {},
            "rng_state": rng_state(),
            "sampler_state": {},
            "config": {"params": params, "execution": {"device": "cpu"}},
        }
        save_checkpoint(run / "checkpoint.pt", state)
    (run / "run.json").write_text(json.dumps({"status": status, "epochs_completed": 2}))
    return run


@pytest.fixture(scope="module")
def runs(data):
    root = data["root"] / "runs"
    root.mkdir()
    return {
        "all": _make_run(root, "all", bias=1.0),
        "none": _make_run(root, "none", bias=-1.0),
        "random": _make_run(root, "random"),
        "running": _make_run(root, "running", status="running"),
        "nockpt": _make_run(root, "nockpt", checkpoint=False),
    }


def _val_index(store: Path, keys: list[str]) -> pd.DataFrame:
    index = SliceStore(store).index
    return index[index["case_id"].isin(keys)]


def test_evaluate_cli_all_tumour_prediction(data, runs, tmp_path, capsys):
    out = tmp_path / "m" / "fold0.csv"
    # the split's subjects table: patients p-c1 and p-c3 linked as one subject
    subjects = pd.DataFrame({"dataset": "alpha", "patient_id": [f"p-{c}" for c in SIDES]})
    subjects["subject_id"] = ["alpha/p-c0", "alpha/p-c1", "alpha/p-c2", "alpha/p-c1"]
    subjects_csv = write_subjects(subjects, tmp_path / "subjects.csv")
    code = main(
        [
            "evaluate",
            "--run",
            str(runs["all"]),
            "--store",
            str(data["alpha"]),
            "--splits",
            str(data["splits"]),
            "--subjects",
            str(subjects_csv),
            "--fold",
            "0",
            "--out",
            str(out),
            "--ratio",
            "0.25",
            "--seed",
            "7",
            "--batch-size",
            "3",
            "--device",
            "cpu",
            "--conventions",
            '{"hd95_one_empty": 300}',
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "4 volumes of 2 cases" in capsys.readouterr().out

    cases = pd.read_csv(out)
    assert list(cases.columns) == [*CASE_COLUMNS, "ratio", "seed"]
    index = _val_index(data["alpha"], ["c1", "c3"])
    modalities = list(dict.fromkeys(index["modality"]))
    assert list(zip(cases["case_id"], cases["modality"])) == [
        (c, m) for c in ("c1", "c3") for m in modalities
    ]
    assert set(cases["dataset"]) == {"alpha"} and set(cases["model"]) == {"unet"}
    assert set(cases["loss"]) == {"bce"} and set(cases["fold"]) == {0}
    assert set(cases["ratio"]) == {0.25} and set(cases["seed"]) == {7}
    assert list(cases["subject_id"]) == ["alpha/p-c1"] * 4  # c1 and c3: one subject
    assert list(cases["patient_id"]) == ["p-c1", "p-c1", "p-c3", "p-c3"]
    volume = SIZE * SIZE * DEPTH
    for row in cases.itertuples():
        tumour = 3 * SIDES[row.case_id] ** 2
        assert (row.tumour_voxels, row.predicted_voxels) == (tumour, volume)
        assert row.specificity == 0.0  # everything predicted: no true negatives
        if tumour:
            assert row.dice == pytest.approx(2 * tumour / (tumour + volume))
            assert row.iou == pytest.approx(tumour / volume)
            assert (row.sensitivity, row.precision) == (1.0, pytest.approx(tumour / volume))
        else:  # empty truth, full prediction
            assert (row.dice, row.iou, row.hd95, row.precision) == (0, 0, 300, 0)
            assert math.isnan(row.sensitivity)

    slices = pd.read_csv(out.with_name("fold0_slices.csv"))
    assert list(slices.columns) == list(SLICE_COLUMNS)
    assert len(slices) == len(index) == 2 * 2 * DEPTH
    assert sorted(zip(slices["case_id"], slices["modality"], slices["slice"])) == sorted(
        zip(index["case_id"], index["modality"], index["slice"])
    )
    merged = slices.merge(index, on=["case_id", "modality", "slice"])
    assert (merged["tp"] == merged["area"]).all() and (
        merged["fp"] == SIZE**2 - merged["area"]
    ).all()
    assert (merged[["fn", "tn"]] == 0).all().all()

    record = read_companion(out)
    assert record["subjects"] == str(subjects_csv)
    # no BraTS label map: the suite's preset, one key overridden, both named
    assert record["conventions"] == EmptyConventions.from_dict({"hd95_one_empty": 300}).to_dict()
    assert record["preset"] == "suite+hd95_one_empty" and record["space"] == "native"
    assert (
        record["hd95_units"] == "mm" and record["fold"] == 0 and record["checkpoint_epoch"] == 2
    )
    assert record["counts"] == {"cases": 2, "volumes": 4, "slices": 20}
    assert record["summary"]["batch_pooled_dice_32"] == pytest.approx(batch_pooled_dice(slices))
    drawn = record["batch_pooled_dice"]
    assert (drawn["order"], drawn["seed"], drawn["batch_size"], drawn["replicas"]) == (
        "authors_sampler_randperm",
        0,
        32,
        1,
    )
    assert record["summary"]["mean_dice"] == pytest.approx(cases["dice"].mean())
    assert (
        record["overlays"]["best"]["case_id"] == "c1"
        and record["overlays"]["worst"]["case_id"] == "c3"
    )
    store = SliceStore(data["alpha"])
    for rank in ("best", "median", "worst"):
        shown = record["overlays"][rank]
        assert (shown["file"], shown["arrays"]) == (f"{rank}.png", f"{rank}.npz")
        png = out.with_name("fold0_overlays") / f"{rank}.png"
        assert matplotlib.image.imread(png).ndim == 3
        image, truth, pred = read_overlay_arrays(out.with_name("fold0_overlays") / shown["arrays"])
        assert (image.dtype, truth.dtype, pred.dtype) == (np.uint8, bool, bool)
        assert image.shape == truth.shape == pred.shape == (SIZE, SIZE)
        at = store.index.reset_index(drop=True)
        (row,) = at.index[
            (at["case_id"] == shown["case_id"])
            & (at["modality"] == shown["modality"])
            & (at["slice"] == shown["slice"])
        ]
        stored_image, stored_mask = store.arrays([row])
        np.testing.assert_array_equal(image, stored_image[0])  # the store's own pixels
        np.testing.assert_array_equal(truth, stored_mask[0] > 0)
        assert pred.all()  # every logit is +1
    # c1: the 6 x 6 square at x 8..13, y 10..15 in slices 1..3, the first of them shown
    assert record["overlays"]["best"]["slice"] == 1
    _, best_truth, _ = read_overlay_arrays(out.with_name("fold0_overlays") / "best.npz")
    assert best_truth.sum() == 36 and best_truth[8:14, 10:16].all()
    # c3: no tumour; the prediction fills every slice, so the first of equals (slice 0)
    assert record["overlays"]["worst"]["slice"] == 0
    _, worst_truth, _ = read_overlay_arrays(out.with_name("fold0_overlays") / "worst.npz")
    assert not worst_truth.any()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "fold0.csv",
        "fold0.json",
        "fold0_overlays",
        "fold0_slices.csv",
    ]


def test_evaluate_empty_prediction_with_conventions(data, runs, tmp_path):
    conv = tmp_path / "conv.json"
    conv.write_text(
        json.dumps(
            {"dice_both_empty": None, "hd95_one_empty": "nan", "precision_empty_prediction": 0}
        )
    )
    out = tmp_path / "none.csv"
    record = evaluate(
        runs["none"],
        [data["alpha"]],
        data["splits"],
        1,
        out,
        conv,
        Labels(dataset="toy", loss="dice"),
        device="cpu",
    )
    cases = pd.read_csv(out)
    assert list(cases.columns) == list(CASE_COLUMNS)
    assert set(cases["dataset"]) == {"toy"} and set(cases["loss"]) == {"dice"}
    assert set(cases["case_id"]) == {"c0", "c2"} and (cases["predicted_voxels"] == 0).all()
    assert (cases[["dice", "iou", "sensitivity", "precision"]] == 0).all().all()
    assert cases["hd95"].isna().all() and (cases["specificity"] == 1).all()
    assert record["conventions"]["dice_both_empty"] is None
    assert record["conventions"]["precision_empty_prediction"] == 0.0

    # c3 has no tumour: both masks empty -> Dice NaN by this convention, IoU 1, hd95 0
    out3 = tmp_path / "c3.csv"
    splits = tmp_path / "c3_splits.json"
    splits.write_text(json.dumps([{"train": ["c0"], "val": ["c3"]}]))
    record = evaluate(runs["none"], [data["alpha"]], splits, 0, out3, conv, device="cpu")
    c3 = pd.read_csv(out3)
    assert c3["dice"].isna().all() and (c3["iou"] == 1).all() and (c3["hd95"] == 0).all()
    assert record["overlays"] == {} and not any((tmp_path / "c3_overlays").iterdir())
    assert record["summary"]["mean_dice"] is None  # NaN in the JSON is null


def test_evaluate_pooled_stores_consistent_counts(data, runs, tmp_path):
    out = tmp_path / "pooled.csv"
    evaluate(runs["random"], [data["alpha"], data["beta"]], data["pooled"], 0, out, device="cpu")
    cases = pd.read_csv(out)
    assert list(cases["case_id"]) == ["beta/b0", "beta/b0", "alpha/c1", "alpha/c1"]
    assert list(cases["dataset"]) == ["beta", "beta", "alpha", "alpha"]
    assert (cases["patient_id"] == ["p-b0", "p-b0", "p-c1", "p-c1"]).all()
    # no subjects table: each patient is its own subject, named with its store's dataset
    assert list(cases["subject_id"]) == ["beta/p-b0", "beta/p-b0", "alpha/p-c1", "alpha/p-c1"]
    assert list(cases["tumour_voxels"]) == [75, 75, 108, 108]
    slices = pd.read_csv(out.with_name("pooled_slices.csv"))
    assert len(slices) == 2 * 4 + 2 * DEPTH
    # the slice table adds up to each volume's counts, in the order evaluated
    sums = slices.groupby(["case_id", "modality"], sort=False)[["tp", "fp", "fn"]].sum()
    assert list(sums.index) == list(zip(cases["case_id"], cases["modality"]))
    np.testing.assert_array_equal(sums["tp"] + sums["fp"], cases["predicted_voxels"])
    np.testing.assert_array_equal(sums["tp"] + sums["fn"], cases["tumour_voxels"])
    assert ((slices["tp"] + slices["fp"] + slices["fn"] + slices["tn"]) == SIZE**2).all()
    tp, fp, fn = (sums[c].to_numpy() for c in ("tp", "fp", "fn"))
    # MONAI returns Dice in float32
    np.testing.assert_allclose(cases["dice"], 2 * tp / (2 * tp + fp + fn), rtol=1e-6)
    np.testing.assert_allclose(cases["sensitivity"], tp / (tp + fn), rtol=1e-12)
    # the centred model predicts some but not all pixels of every volume
    n_slices = slices.groupby(["case_id", "modality"], sort=False).size().to_numpy()
    assert (cases["predicted_voxels"] > 0).all()
    assert (cases["predicted_voxels"] < n_slices * SIZE**2).all()


NATIVE_SHAPE, NATIVE_ZOOMS = (48, 40, 6), (0.8, 1.1, 2.5)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """One case on a 48 x 40 x 6 grid of 0.8 x 1.1 x 2.5 mm stored LPS (x and y flipped),
    preprocessed to 32 x 32 slices: native and training grids differ."""
    root = tmp_path_factory.mktemp("native")
    affine = np.diag([-NATIVE_ZOOMS[0], -NATIVE_ZOOMS[1], NATIVE_ZOOMS[2], 1.0])
    seg = np.zeros(NATIVE_SHAPE, dtype=np.uint8)
    seg[10:30, 5:25, 1:5] = 1
    folder = root / "n0"
    folder.mkdir()
    nib.save(nib.Nifti1Image(seg, affine), folder / "seg.nii.gz")
    data = np.random.default_rng(3).normal(size=NATIVE_SHAPE).astype(np.float32) + 3 * seg
    nib.save(nib.Nifti1Image(data, affine), folder / "t1.nii.gz")
    case = Case("gamma", "n0", "p-n0", {"t1": folder / "t1.nii.gz"}, folder / "seg.nii.gz")
    preprocess([case], root / "store", PreprocessSettings(size=SIZE), progress=False)
    splits = root / "splits.json"
    splits.write_text(json.dumps([{"train": ["x"], "val": ["n0"]}]))
    return {"root": root, "store": root / "store", "splits": splits, "seg": seg}


def test_evaluate_native_and_training_space(native, runs, tmp_path):
    # the all-tumour model: every voxel predicted on either grid
    rec = {}
    for space in ("native", "training"):
        out = tmp_path / f"{space}.csv"
        rec[space] = evaluate(runs["all"], [native["store"]], native["splits"], 0, out,
                              space=space, device="cpu")
        rec[space]["row"] = pd.read_csv(out).iloc[0]
    full = np.ones(NATIVE_SHAPE, dtype=bool)
    expected = case_metrics(full, native["seg"], spacing=NATIVE_ZOOMS)
    row = rec["native"]["row"]
    assert row.predicted_voxels == full.size and row.tumour_voxels == native["seg"].sum()
    assert row.hd95 == pytest.approx(expected["hd95"])
    assert row.dice == pytest.approx(expected["dice"])
    assert rec["native"]["scoring"]["space"] == "native"
    # the grid it was scored on, in the CSV: the release's own
    assert (row.grid_shape, row.spacing_mm) == ("48x40x6", "0.8x1.1x2.5")
    assert row.tumour_ml == pytest.approx(native["seg"].sum() * 0.8 * 1.1 * 2.5 / 1000)
    # training grid: 32 x 32 x 6 slices, spacing scaled by the in-plane extent / 32
    store = SliceStore(native["store"])
    truth = np.moveaxis(store.arrays(store.index.sort_values("slice").index.to_numpy())[1], 0, -1)
    step = (0.8 * 48 / SIZE, 1.1 * 40 / SIZE, 2.5)
    expected = case_metrics(np.ones_like(truth), truth, spacing=step)
    row = rec["training"]["row"]
    assert row.predicted_voxels == SIZE * SIZE * 6 and row.hd95 == pytest.approx(expected["hd95"])
    assert (row.grid_shape, row.spacing_mm) == ("32x32x6", "1.2x1.375x2.5")
    assert row.tumour_ml == pytest.approx(row.tumour_voxels * math.prod(step) / 1000)
    assert rec["training"]["scoring"]["space"] == "training"


def test_evaluate_native_needs_the_original_mask(native, runs, tmp_path):
    seg = native["root"] / "n0" / "seg.nii.gz"  # the store records its absolute path
    hidden = seg.with_name("hidden.nii.gz")
    seg.rename(hidden)
    try:
        with pytest.raises(CalfError, match="seg.nii.gz.*gone.*--space training"):
            evaluate(runs["all"], [native["store"]], native["splits"], 0, tmp_path / "x.csv",
                     device="cpu")
        assert not (tmp_path / "x.csv").exists()
        # the training grid does not read the release
        evaluate(runs["all"], [native["store"]], native["splits"], 0, tmp_path / "t.csv",
                 space="training", device="cpu")
    finally:
        hidden.rename(seg)


def _fails(argv: list[str], capsys, *named: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in named:
        assert text in err, err
    return err


@pytest.mark.parametrize(
    "case, named",
    [
        ("nockpt", ["checkpoint.pt"]),
        ("running", ["run.json", "'running'"]),
        ("fold", ["splits_final.json", "no fold 5"]),
        ("missing", ["'c9'", "alpha-store"]),
        ("conventions", ["'dice'", "conv.json"]),
        ("lesions", ["--lesions", "dilatio", "volume_threshold"]),
        ("tolerance", ["--nsd-tolerance -1"]),
        ("subjects", ["subjects.csv", "no subject for patient alpha/p-c3", "'c3'"]),
        ("exists", ["already exists"]),
    ],
)
def test_evaluate_errors_leave_nothing(case, named, data, runs, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.csv"
    run, splits, fold = runs["all"], data["splits"], "0"
    extra: list[str] = []
    if case in ("nockpt", "running"):
        run = runs[case]
    elif case == "fold":
        fold = "5"
    elif case == "missing":
        splits = tmp_path / "splits.json"
        splits.write_text(json.dumps([{"train": ["c0"], "val": ["c1", "c9"]}]))
    elif case == "conventions":
        (tmp_path / "conv.json").write_text(json.dumps({"dice": 1}))
        extra = ["--conventions", str(tmp_path / "conv.json")]
    elif case == "lesions":
        extra = ["--lesions", '{"dilatio": 2}']
    elif case == "tolerance":
        extra = ["--nsd-tolerance", "-1"]
    elif case == "subjects":  # a table that lacks a validation case's patient
        table = pd.DataFrame({"dataset": ["alpha"], "patient_id": ["p-c1"],
                              "subject_id": ["alpha/p-c1"]})
        extra = ["--subjects", str(write_subjects(table, tmp_path / "subjects.csv"))]
    else:
        out.write_text("made by hand\n")
    argv = [
        "evaluate",
        "--run",
        str(run),
        "--store",
        str(data["alpha"]),
        "--splits",
        str(splits),
        "--fold",
        fold,
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]
    _fails(argv, capsys, *[n.replace("splits_final.json", str(splits)) for n in named])
    expected = ["x.csv"] if case == "exists" else []
    assert sorted(p.name for p in out_dir.iterdir()) == expected
    if case == "exists":
        assert out.read_text() == "made by hand\n"
        assert main([*argv, "--force"]) == 0
        assert len(pd.read_csv(out)) == 4 and out.with_name("x_overlays").is_dir()


def test_failure_while_writing_leaves_nothing(data, runs, tmp_path, monkeypatch):
    def broken(path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("calf.evaluate.pipeline.write_overlay", broken)
    with pytest.raises(OSError, match="disk full"):
        evaluate(runs["all"], [data["alpha"]], data["splits"], 0, tmp_path / "x.csv", device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_follow_the_one_rule(data, runs, tmp_path, capsys):
    """A file is replaced only with --force; so is an overlays folder that is not empty."""
    out = tmp_path / "x.csv"
    argv = ["evaluate", "--run", str(runs["all"]), "--store", str(data["alpha"]), "--splits",
            str(data["splits"]), "--fold", "0", "--out", str(out), "--device", "cpu",
            "--space", "training", "--no-lesion-metrics", "--ratio", "natural"]
    folder = tmp_path / "x_overlays"
    folder.mkdir()  # empty: nothing to lose, so it is no obstacle
    assert main(argv) == 0, capsys.readouterr().err
    assert set(pd.read_csv(out)["ratio"]) == {"natural"}
    first = read_companion(out)
    out.unlink()
    out.with_suffix(".json").unlink()
    Path(f"{tmp_path / 'x'}_slices.csv").unlink()
    (folder / "mine.txt").write_text("made by hand\n")  # a folder with the user's file
    _fails(argv, capsys, str(folder), "already exists", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_overlays"]
    assert (folder / "mine.txt").is_file()
    assert main([*argv, "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{rank}.{ext}" for rank in ("best", "median", "worst") for ext in ("npz", "png")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file or folder left
        "x.csv", "x.json", "x_overlays", "x_slices.csv"]
    again = read_companion(out.with_suffix(".json"))
    assert again["summary"] == first["summary"] and again["overlays"] == first["overlays"]


def test_several_runs_check_every_output_first(data, runs, tmp_path, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    argv = ["evaluate", "--run", str(runs["all"]), "--run", str(runs["none"]), "--store",
            str(data["alpha"]), "--splits", str(data["splits"]), "--fold", "0", "--device",
            "cpu", "--space", "training", "--no-lesion-metrics", "--loss", "x", "--loss", "y"]
    second.with_suffix(".json").write_text("{}\n")  # the second run's companion is in the way
    _fails([*argv, "--out", str(first), "--out", str(second)], capsys, "b.json",
           "already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # the first not written
    _fails([*argv, "--out", str(first), "--out", str(first)], capsys, "the same file")
    assert main([*argv, "--out", str(first), "--out", str(second), "--force"]) == 0
    assert set(pd.read_csv(first)["loss"]) == {"x"} and set(pd.read_csv(second)["loss"]) == {"y"}
    assert read_companion(second)["summary"]["mean_dice"] != read_companion(first)["summary"][
        "mean_dice"]


def test_evaluation_does_not_import_the_training_loop(data, runs, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from calf.evaluate import evaluate\n"
        f"evaluate({str(runs['all'])!r}, [{str(data['alpha'])!r}], {str(data['splits'])!r}, 0, "
        f"{str(tmp_path / 'x.csv')!r}, space='training', device='cpu')\n"
        "print('calf.train.loop' in sys.modules, 'calf.device' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_overlay_arrays_round_trip_and_bad_files(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    truth = np.zeros((3, 4), dtype=np.uint8)
    truth[1, 2] = 1
    path = tmp_path / "best.npz"
    write_overlay_arrays(path, image, truth, np.ones((3, 4)))  # 0/1 masks stored as bool
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]  # no second suffix, no temp
    got_image, got_truth, got_pred = read_overlay_arrays(path)
    np.testing.assert_array_equal(got_image, image)
    assert got_image.dtype == np.uint8 and got_truth.dtype == bool
    assert got_truth.sum() == 1 and got_truth[1, 2] and got_pred.all()

    with pytest.raises(CalfError, match="pred must be 2-D of the image's shape"):
        write_overlay_arrays(tmp_path / "x.npz", image, truth, np.ones((4, 3)))
    np.savez(tmp_path / "nokey.npz", image=image, truth=truth)
    with pytest.raises(CalfError, match=r"nokey.npz: .*no key 'pred'"):
        read_overlay_arrays(tmp_path / "nokey.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CalfError, match="junk.npz: not a readable overlay"):
        read_overlay_arrays(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        read_overlay_arrays(tmp_path / "gone.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "junk.npz", "nokey.npz"]


def test_failed_overlay_arrays_leave_nothing(tmp_path, monkeypatch):
    def broken(handle, **arrays):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        write_overlay_arrays(tmp_path / "best.npz", np.zeros((2, 2)), np.zeros((2, 2)),
                             np.zeros((2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_out_must_be_csv(data, runs, tmp_path):
    with pytest.raises(CalfError, match="x.txt"):
        evaluate(runs["all"], [data["alpha"]], data["splits"], 0, tmp_path / "x.txt")


@pytest.mark.parametrize(
    "maps, expected",
    [
        (["brats2021"], "brats"),  # BraTS 2021, UPENN-GBM, UCSF-PDGM
        (["brats2023", "brats2024_post"], "brats"),
        (["binary"], "suite"),  # LGG-1p19qDeletion
        (["brats2021", "any"], "suite"),  # a pool with a non-BraTS member
        ([], "suite"),
    ],
)
def test_auto_preset_follows_the_release_family(maps, expected):
    from types import SimpleNamespace

    from calf.evaluate.pipeline import resolve_preset

    stores = [SimpleNamespace(meta={"settings": {"region_labels": {m: [1]}}}) for m in maps]
    assert resolve_preset("auto", stores) == expected
    assert resolve_preset("nnunet", stores) == "nnunet"
    with pytest.raises(CalfError, match="--preset 'x'"):
        resolve_preset("x", stores)


@pytest.mark.parametrize(
    "preset, pred, truth, expected",
    [
        # no instance on either side: SQ / PQ Dice the both-empty Dice, SQ HD95 the both-empty HD95
        ("suite", EMPTY, EMPTY, dict(sq_dsc=1, pq_dsc=1, sq_hd95=0)),
        ("nnunet", EMPTY, EMPTY, dict(sq_dsc=NAN, pq_dsc=NAN, sq_hd95=NAN)),
        # instances, no match (panoptica: Dice 0, HD95 inf): the one-empty HD95 of the grid
        ("suite", _cube((5, 5, 5), 3), CUBE, dict(sq_dsc=0, pq_dsc=0, sq_hd95=DIAGONAL_8)),
        ("brats", EMPTY, CUBE, dict(sq_dsc=0, pq_dsc=0, sq_hd95=DIAGONAL_8)),
        ("nnunet", EMPTY, CUBE, dict(sq_dsc=0, pq_dsc=0, sq_hd95=NAN)),
        # one match, exact: 1, 1, 0
        ("suite", CUBE, CUBE, dict(sq_dsc=1, pq_dsc=1, sq_hd95=0)),
    ],
)
def test_instance_wise_edge_cases_go_through_the_preset(preset, pred, truth, expected):
    m = case_metrics(pred, truth, EmptyConventions.named(preset))
    assert not any(math.isinf(v) for v in m.values())
    for key, value in expected.items():
        assert _same(m[key], value), (key, m[key], value)
