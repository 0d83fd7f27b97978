import math

import numpy as np
import pytest
import scipy.stats
import torch

from calf.imbalance import contour_areas, foreground_areas, imbalance_stats, moments

SQRT3 = math.sqrt(3.0)


@pytest.mark.parametrize(
    "areas, skewness, kurtosis",
    [
        # mean 2.5, m2 = 75/4, m3 = 375/4, m4 = 13125/16 (worked by hand)
        ([0, 0, 0, 10], 2 / SQRT3, -2 / 3),
        ([0, 10, 10, 10], -2 / SQRT3, -2 / 3),
        # symmetric: m3 = 0; m2 = 2/3, m4 = 2/3 -> g2 = 1.5 - 3
        ([1, 2, 3], 0.0, -1.5),
        # two distinct values, equal counts: g1 = 0, g2 = 1 - 3
        ([0, 0, 4, 4], 0.0, -2.0),
    ],
)
def test_hand_checked_values(areas, skewness, kurtosis):
    stats = imbalance_stats(areas)
    assert stats.n == len(areas)
    assert stats.skewness == pytest.approx(skewness, abs=1e-12)
    assert stats.kurtosis == pytest.approx(kurtosis, abs=1e-12)
    assert stats.defined


@pytest.mark.parametrize("areas", [[], [7], [5, 5, 5], [0] * 32, [65536.0] * 3])
def test_undefined_is_nan(areas):
    stats = imbalance_stats(areas)
    assert math.isnan(stats.skewness) and math.isnan(stats.kurtosis)
    assert not stats.defined
    assert stats.n == len(areas)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dist", ["exponential", "beta", "poisson"])
def test_equals_scipy_defaults(seed, dist):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    if dist == "exponential":
        areas = rng.exponential(500.0, n)
    elif dist == "beta":
        areas = 4096 * rng.beta(5.0, 1.2, n)
    else:
        areas = rng.poisson(3.0, n).astype(float)
    stats = imbalance_stats(areas)
    assert stats.skewness == pytest.approx(scipy.stats.skew(areas), rel=1e-9, abs=1e-12)
    assert stats.kurtosis == pytest.approx(scipy.stats.kurtosis(areas), rel=1e-9, abs=1e-12)


def test_tensor_and_list_agree_and_pandas_differs():
    areas = [0, 0, 1, 3, 9, 27]
    a = imbalance_stats(areas)
    b = imbalance_stats(torch.tensor(areas))
    assert (a.skewness, a.kurtosis) == pytest.approx((b.skewness, b.kurtosis))
    import pandas as pd

    # pandas' skew is the unbiased G1, which the method does not use
    assert pd.Series(areas).skew() != pytest.approx(a.skewness, rel=1e-3)


def test_non_finite_areas_raise():
    with pytest.raises(ValueError, match="finite"):
        imbalance_stats([1.0, float("nan"), 2.0])


def test_moments_vectorised_over_a_dimension():
    areas = torch.tensor([[0, 0, 0, 10], [1, 2, 3, 4], [5, 5, 5, 5]])
    s, k = moments(areas, dim=1)
    assert s[0].item() == pytest.approx(2 / SQRT3)
    assert s[1].item() == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(s[2].item()) and math.isnan(k[2].item())


def test_pixel_areas_per_image_2d_and_3d():
    masks = torch.zeros(3, 1, 4, 4)
    masks[1, 0, :2, :2] = 1
    masks[2] = 1
    assert foreground_areas(masks).tolist() == [0, 4, 16]
    vol = torch.zeros(2, 1, 3, 4, 4)
    vol[0, 0, 1:, :, :1] = 1
    assert foreground_areas(vol).tolist() == [8, 0]


def test_unknown_area_definition():
    with pytest.raises(ValueError, match="area must be one of"):
        foreground_areas(torch.zeros(2, 1, 4, 4), area="perimeter")


cv2 = None
try:
    import cv2  # noqa: F811
except ImportError:  # pragma: no cover
    pass

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv-python-headless is not installed")


@needs_cv2
@pytest.mark.parametrize(
    "blobs, expected",
    [
        # polygons run through pixel centres: an n x m block encloses (n-1)(m-1)
        ([(slice(2, 7), slice(2, 7))], 16.0),
        ([(slice(0, 3), slice(1, 5))], 6.0),
        # a single pixel and a one-pixel-wide line enclose nothing
        ([(slice(5, 6), slice(5, 6))], 0.0),
        ([(slice(1, 2), slice(0, 8))], 0.0),
        # two separate blocks: the areas add up
        ([(slice(0, 3), slice(0, 3)), (slice(10, 13), slice(10, 14))], 4.0 + 6.0),
        ([], 0.0),
    ],
)
def test_contour_areas_hand_computed(blobs, expected):
    mask = torch.zeros(1, 1, 16, 16)
    for rows, cols in blobs:
        mask[0, 0, rows, cols] = 1
    assert contour_areas(mask).tolist() == [expected]
    assert foreground_areas(mask, area="contour").tolist() == [expected]


@needs_cv2
def test_contour_rejects_3d():
    with pytest.raises(ValueError, match="2-D masks"):
        contour_areas(torch.zeros(2, 1, 3, 4, 4))
