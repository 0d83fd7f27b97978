"""calf.evaluate.native: predictions back on the native grid, truth read as released.

Every case here is a real NIfTI file written with nibabel and run through the real
``calf.preprocess.preprocess``; predictions are the store's own mask slices as logits.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calf.datasets.base import Case
from calf.errors import CalfError
from calf.evaluate.metrics import MetricSettings, case_metrics
from calf.evaluate.native import RESAMPLES, native_settings, read_truth, to_native
from calf.preprocess import PreprocessSettings, preprocess
from calf.store import SliceStore

# LPS: native axes run to -x, -y, +z (DICOM order), 1 mm
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# permuted and flipped, zooms (0.9, 3.0, 1.2): native axis 0 -> -y (0.9 mm),
# axis 1 -> +z (3.0 mm), axis 2 -> -x (1.2 mm); io_orientation [[1, -1], [2, 1], [0, -1]]
PERMUTED = np.array(
    [[0, 0, -1.2, 30], [-0.9, 0, 0, 40], [0, 3.0, 0, -20], [0, 0, 0, 1]], dtype=float
)
NO_LESIONS = MetricSettings(lesion_metrics=False)


def write_case(root: Path, case_id: str, seg: np.ndarray, affine: np.ndarray, **kw) -> Case:
    """``<root>/<case>/{t1,seg}.nii.gz`` with the given mask and affine; the image is the
    mask as float (its content does not matter here)."""
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(seg, affine), folder / "seg.nii.gz")
    nib.save(nib.Nifti1Image(seg.astype(np.float32), affine), folder / "t1.nii.gz")
    return Case("toy", case_id, case_id, {"t1": folder / "t1.nii.gz"}, folder / "seg.nii.gz", **kw)


def store_logits(store: SliceStore, case_id: str) -> np.ndarray:
    """The store's mask slices of one case in slice order as logits: +10 tumour, -10 not."""
    rows = store.index[store.index["case_id"] == case_id].drop_duplicates("mask_row")
    rows = rows.sort_values("slice")["mask_row"].to_numpy()
    return np.where(np.asarray(store.masks[rows]) > 0, 10.0, -10.0).astype(np.float32)


def brats_labels(shape, seed) -> np.ndarray:
    """Random BraTS 2021 labels (0, 1, 2, 4): no symmetry a flip or a transpose could hide."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=shape, p=[0.4, 0.2, 0.2, 0.2])


@pytest.mark.parametrize(
    "affine, shape, size, mask_resize, resample",
    [
        # LPS, canonical in-plane 10 x 10 = S: no resizing, an exact round trip
        (LPS, (10, 10, 4), 10, "bilinear", "logits"),
        (LPS, (10, 10, 4), 10, "nearest", "nearest"),
        # permuted: canonical (x, y, z) = (native 2, native 0, native 1) = (12, 12, 5)
        (PERMUTED, (12, 5, 12), 12, "bilinear", "logits"),
        (PERMUTED, (12, 5, 12), 12, "nearest", "nearest"),
        # non-square canonical in-plane (x, y) = (6, 9) at S = 18, nearest both ways: output
        # pixel j of 18 reads input floor((j + 0.5) * n / 18); up by 3 (resp. 2) and back
        # reads j = 3i + 1 (2i + 1), whose source is floor((3i + 1.5) / 3) = i
        # (floor((2i + 1.5) / 2) = i): exact
        (PERMUTED, (9, 3, 6), 18, "nearest", "nearest"),
    ],
)
def test_orientation_round_trip_is_exact(tmp_path, affine, shape, size, mask_resize, resample):
    labels = brats_labels(shape, seed=sum(shape))
    case = write_case(
        tmp_path / "in", "c", labels, affine, valid_labels=(0, 1, 2, 4), label_map="brats2021"
    )
    out = tmp_path / "store"
    settings = PreprocessSettings(size=size, mask_resize=mask_resize, region="tc")
    preprocess([case], out, settings, progress=False)
    store = SliceStore(out)
    geometry = store.geometry("c")
    # tumour core of BraTS 2021 = labels {1, 4}; label 2 (oedema) is background here
    expected = np.isin(labels, [1, 4])
    assert geometry.region_labels == (1, 4) and 0 < expected.sum() < expected.size
    truth = read_truth(geometry)
    assert truth.dtype == bool and truth.shape == shape
    np.testing.assert_array_equal(truth, expected)
    pred = to_native(store_logits(store, "c"), geometry, resample)
    assert pred.dtype == bool and pred.shape == shape
    np.testing.assert_array_equal(pred, expected)


def test_orientation_is_undone_not_ignored(tmp_path):
    # the store's slices are canonical; read as if native they would not match the mask
    labels = brats_labels((12, 5, 12), seed=1)
    case = write_case(tmp_path / "in", "c", labels, PERMUTED, label_map="brats2021")
    preprocess([case], tmp_path / "store", PreprocessSettings(size=12), progress=False)
    store = SliceStore(tmp_path / "store")
    g = store.geometry("c")
    assert g.orientation == ((1, -1), (2, 1), (0, -1)) and g.canonical_shape == (12, 12, 5)
    canonical = store_logits(store, "c").transpose(1, 2, 0) > 0  # (x, y, z)
    assert canonical.shape == (12, 12, 5) and canonical.shape != g.shape
    native = to_native(store_logits(store, "c"), g, "logits")
    # native axis 0 -> -y, axis 1 -> +z, axis 2 -> -x (flipped axes reversed):
    # native[i, k, j] = canonical[11 - j, 11 - i, k]
    np.testing.assert_array_equal(native, canonical[::-1, ::-1, :].transpose(1, 2, 0))


def ball(shape, spacing, centre_mm, radius_mm) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of ``centre_mm`` (native mm)."""
    grid = np.indices(shape).astype(float)
    d2 = sum(((grid[a] * spacing[a]) - centre_mm[a]) ** 2 for a in range(3))
    return d2 <= radius_mm**2


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("resample", RESAMPLES)
def test_hd95_of_two_balls_is_in_native_mm(tmp_path, axis, resample):
    """Two balls of radius r offset by d mm: a surface point of one at angle theta from the
    offset lies |s - r| from the other's surface, s = sqrt(r^2 + d^2 - 2 r d cos theta).
    cos theta is uniform on the sphere (Archimedes), so s^2 is uniform on
    [(r - d)^2, (r + d)^2] and P(|s - r| > t) = 1 - t / d: the 95th percentile is 0.95 d in
    both directions, whatever r. d = 6 mm: HD95 = 5.7 mm, up to one voxel (3.0 mm) of
    discretisation. The offset runs along native axis 0 (0.9 mm, 6.67 voxels) or axis 1
    (3.0 mm, 2 voxels); the same arrays scored with the canonical-order spacing
    (1.2, 0.9, 3.0), the natural mix-up, give another value (axis 0: 6.77 mm instead of
    5.4 mm, axis 1: 1.8 mm instead of 6.0 mm, MONAI's numbers)."""
    spacing = (0.9, 3.0, 1.2)  # the header zooms of PERMUTED
    shape = (60, 14, 40)  # 54 x 42 x 48 mm
    centre = np.array([22.0, 21.0, 24.0])
    offset = np.zeros(3)
    offset[axis] = 6.0
    truth_mask = ball(shape, spacing, centre, 12.0)
    pred_mask = ball(shape, spacing, centre + offset, 12.0)
    cases = [
        write_case(tmp_path / "in", "t", truth_mask.astype(np.uint8), PERMUTED),
        write_case(tmp_path / "in", "p", pred_mask.astype(np.uint8), PERMUTED),
    ]
    # canonical in-plane (x, y) = (native 2, native 0) = (40, 60): S = 60 resamples x
    settings = PreprocessSettings(size=60, mask_resize="nearest")
    preprocess(cases, tmp_path / "store", settings, progress=False)
    store = SliceStore(tmp_path / "store")
    g = store.geometry("t")
    assert g.spacing == pytest.approx(spacing) and g.canonical_shape == (40, 60, 14)
    truth = read_truth(g)
    np.testing.assert_array_equal(truth, truth_mask)
    # the prediction: case p's store slices (resized like any training sample) as logits
    pred = to_native(store_logits(store, "p"), g, resample)
    if resample == "nearest":
        # x by nearest, 40 -> 60 -> 40: output i reads j = floor(1.5 (i + 0.5)), whose
        # source is floor((j + 0.5) / 1.5) = i for i = 0, 1 (and so on with period 2): exact
        np.testing.assert_array_equal(pred, pred_mask)
    hd95 = case_metrics(pred, truth, spacing=g.spacing, settings=NO_LESIONS)["hd95"]
    assert abs(hd95 - 6.0) <= max(spacing) and abs(hd95 - 0.95 * 6.0) <= max(spacing)
    mixed = case_metrics(pred, truth, spacing=g.canonical_spacing, settings=NO_LESIONS)["hd95"]
    assert g.canonical_spacing == pytest.approx((1.2, 0.9, 3.0)) and abs(mixed - hd95) > 0.5


@pytest.fixture(scope="module")
def brats_ball(tmp_path_factory):
    """A ball of radius 20 mm centred at voxel (120, 120, 24) of 240 x 240 x 48 at 1 mm."""
    root = tmp_path_factory.mktemp("ball")
    i, j, k = np.indices((240, 240, 48))
    mask = ((i - 120) ** 2 + (j - 120) ** 2 + (k - 24) ** 2 <= 20**2).astype(np.uint8)
    return write_case(root / "in", "c", mask, np.eye(4), valid_labels=(0, 1)), root


@pytest.mark.parametrize(
    "mask_resize, resample, dice",
    # measured (documented in calf.evaluate.native's docstring); the first-order estimate
    # 1 - c h 3 pi / (8 r), h = 240 / 64 = 3.75 mm, r = 20 mm, c in [0.18, 0.25] (mean
    # boundary displacement per unit length of a pixel-quantised edge) brackets them:
    # [0.945, 0.960]; nearest store masks lose less than the dilated bilinear ones
    [
        ("nearest", "logits", 0.9590),
        ("nearest", "nearest", 0.9472),
        ("bilinear", "logits", 0.9547),
        ("bilinear", "nearest", 0.9451),
    ],
)
def test_round_trip_dice(brats_ball, mask_resize, resample, dice):
    case, root = brats_ball
    out = root / f"store-{mask_resize}"
    preprocess([case], out, PreprocessSettings(size=64, mask_resize=mask_resize), progress=False)
    store = SliceStore(out)
    logits = store_logits(store, "c")
    assert logits.shape == (48, 64, 64)
    # training space: the prediction is the resized truth itself
    training = case_metrics(logits > 0, np.asarray(store.masks), settings=NO_LESIONS)
    assert training["dice"] == 1.0
    g = store.geometry("c")
    truth = read_truth(g)
    assert int(truth.sum()) == 33401  # voxel count of the ball; 4/3 pi 20^3 = 33510
    pred = to_native(logits, g, resample)
    native = case_metrics(pred, truth, spacing=g.spacing, settings=NO_LESIONS)
    assert native["dice"] == pytest.approx(dice, abs=1e-4)
    assert 0.945 - 1e-3 <= native["dice"] <= 0.960 + 1e-3


@pytest.fixture()
def one_case(tmp_path):
    labels = brats_labels((8, 8, 3), seed=3)
    case = write_case(tmp_path / "in", "c", labels, LPS, label_map="brats2021")
    preprocess([case], tmp_path / "store", PreprocessSettings(size=8), progress=False)
    return case, SliceStore(tmp_path / "store").geometry("c")


def test_read_truth_file_gone(one_case):
    case, g = one_case
    case.mask.unlink()
    stale = "changed since preprocessing; rerun calf preprocess"
    with pytest.raises(CalfError, match=stale) as info:
        read_truth(g)
    assert str(case.mask) in str(info.value) and "gone" in str(info.value)


def test_read_truth_shape_changed(one_case):
    case, g = one_case
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), LPS), case.mask)
    with pytest.raises(CalfError, match=r"shape \[8, 8, 4\] differs from \[8, 8, 3\]") as info:
        read_truth(g)
    assert str(case.mask) in str(info.value) and "rerun calf preprocess" in str(info.value)


def test_read_truth_affine_changed(one_case):
    case, g = one_case
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), case.mask)
    with pytest.raises(CalfError, match="affine differs"):
        read_truth(g)


def test_to_native_bad_input(one_case):
    _, g = one_case
    with pytest.raises(CalfError, match="4 predicted slices, the canonical volume has 3"):
        to_native(np.zeros((4, 8, 8), np.float32), g, "logits")
    with pytest.raises(CalfError, match=r"expected a \(Z, S, S\) stack"):
        to_native(np.zeros((3, 8, 6), np.float32), g, "logits")
    with pytest.raises(CalfError, match="resample must be one of logits, nearest, got 'cubic'"):
        to_native(np.zeros((3, 8, 8), np.float32), g, "cubic")


def test_to_native_threshold_is_strict(one_case):
    # logit 0 is background in both modes (prediction = logit > 0, as in the metrics)
    _, g = one_case
    for resample in RESAMPLES:
        assert not to_native(np.zeros((3, 8, 8), np.float32), g, resample).any()
        assert to_native(np.full((3, 8, 8), 1e-3, np.float32), g, resample).all()


@pytest.mark.parametrize("resample", RESAMPLES)
def test_native_settings(resample):
    record = native_settings(resample)
    assert record["grid"] == "native" and record["resample"] == resample
    assert ("bilinear" in record["prediction"]) == (resample == "logits")
    with pytest.raises(CalfError, match="resample must be one of"):
        native_settings("linear")


def test_to_native_takes_tensors_like_arrays(one_case):
    import torch

    _, g = one_case
    logits = np.where(np.arange(3 * 8 * 8).reshape(3, 8, 8) % 3 == 0, 1.0, -1.0)
    from_array = to_native(logits, g, "logits")
    np.testing.assert_array_equal(to_native(torch.from_numpy(logits), g, "logits"), from_array)
    # S = 8 = the in-plane size: no resizing, so exactly a third of the voxels (index % 3 == 0)
    assert int(from_array.sum()) == 64
