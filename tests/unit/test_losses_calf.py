import math

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from calf.losses import BRANCHES, CALFLoss, CALFRegionLoss, select_branch


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


TRANSFORMS = {
    "fisher": lambda q: 0.5 * math.log((1 + q) / (1 - q)),
    "logit": lambda q: math.log(q / (1 - q)),
    "arcsine": lambda q: math.asin(math.sqrt(q)),
    "log10": lambda q: math.log10(q),
    "ln": lambda q: math.log(q),
}


# ---------------------------------------------------------------- the decision rule
@pytest.mark.parametrize(
    "s, k, branch",
    [
        (-5.0, 0.0, "fisher"),
        (-1.0, 0.0, "fisher"),  # boundary: S <= -1
        (-0.9999, 0.0, "logit"),
        (-0.5, 0.0, "logit"),  # boundary: -1 < S <= -0.5
        (-0.4999, 0.0, "arcsine"),
        (-1e-9, 5.0, "arcsine"),
        (0.0, -1.0, "bce_dice"),  # S = 0 is no row of its own
        (0.0, 1.0, "bce_dice"),
        (0.25, -0.1, "log10"),  # 0 < S < 0.5 with K < 0
        (0.25, 0.0, "bce_dice"),  # ... with K >= 0
        (0.25, 3.0, "bce_dice"),
        (0.4999, -2.0, "log10"),
        (0.5, -2.0, "ln"),  # boundary: 0.5 <= S < 1 (K ignored)
        (0.5, 2.0, "ln"),
        (0.9999, 0.0, "ln"),
        (1.0, 0.0, "log10"),  # boundary: S >= 1
        (12.0, 200.0, "log10"),
        (float("nan"), float("nan"), "bce_dice"),
        (float("nan"), -1.0, "bce_dice"),
        (0.25, float("nan"), "bce_dice"),
    ],
)
def test_select_branch(s, k, branch):
    assert select_branch(s, k) == branch


# ---------------------------------------------------------------- per-branch values
def _pair(n_pos: int, n_neg: int, pos_logit: float, neg_logit: float):
    """A batch of one 1 x 1 x (n_pos + n_neg) image: logits pos_logit on tumour pixels."""
    y = torch.tensor([1.0] * n_pos + [0.0] * n_neg).reshape(1, 1, 1, -1)
    x = torch.where(y > 0, torch.tensor(pos_logit), torch.tensor(neg_logit))
    return x, y


# (skewness, kurtosis) fixing each branch in dataset scope
FIXING = {
    "fisher": (-2.0, 0.0),
    "logit": (-0.7, 0.0),
    "arcsine": (-0.2, 0.0),
    "log10": (1.5, 1.0),
    "ln": (0.7, 0.0),
    "bce_dice": (0.2, 1.0),
}


@pytest.mark.parametrize("branch", [b for b in BRANCHES if b != "bce_dice"])
@pytest.mark.parametrize("pos_logit, neg_logit", [(2.0, -1.0), (-3.0, 0.5), (0.0, 0.0)])
def test_transformed_branch_values(branch, pos_logit, neg_logit):
    x, y = _pair(3, 5, pos_logit, neg_logit)
    loss = CALFLoss(scope="dataset", skewness=FIXING[branch][0], kurtosis=FIXING[branch][1])
    value = loss(x, y)
    assert loss.last_branch == branch
    # the formula as written: -mean(y T(p) + (1 - y) T(1 - p)), p = sigmoid(logit)
    t = TRANSFORMS[branch]
    p_pos, p_neg = sigmoid(pos_logit), sigmoid(neg_logit)
    expected = -(3 * t(p_pos) + 5 * t(1 - p_neg)) / 8
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert value.dtype == torch.float32 and value.ndim == 0


@pytest.mark.parametrize("pos_logit, neg_logit", [(2.0, -1.0), (-3.0, 0.5)])
def test_bce_dice_value(pos_logit, neg_logit):
    x, y = _pair(3, 5, pos_logit, neg_logit)
    loss = CALFLoss(scope="dataset", skewness=0.2, kurtosis=1.0)
    p_pos, p_neg = sigmoid(pos_logit), sigmoid(neg_logit)
    bce = -(3 * math.log(p_pos) + 5 * math.log(1 - p_neg)) / 8
    dice = (2 * 3 * p_pos + 1e-7) / (3 * p_pos + 5 * p_neg + 3 + 1e-7)
    assert loss(x, y).item() == pytest.approx(bce + 1 - dice, rel=1e-5)
    assert loss.last_branch == "bce_dice"


def test_clamp_bounds_the_transformed_branches():
    # a confidently wrong pixel: p = sigmoid(-40) ~ 4e-18 is clamped to 1e-7
    x, y = _pair(1, 0, -40.0, 0.0)
    for branch in ("fisher", "logit", "log10", "ln"):
        loss = CALFLoss(scope="dataset", skewness=FIXING[branch][0], kurtosis=0.0)
        expected = -TRANSFORMS[branch](1e-7)
        assert loss(x, y).item() == pytest.approx(expected, rel=1e-4)


def test_ln_branch_equals_bce_with_logits_and_log10_is_bce_over_ln10():
    g = torch.Generator().manual_seed(0)
    x = torch.empty(4, 1, 16, 16).uniform_(-6, 6, generator=g)
    y = (torch.rand(4, 1, 16, 16, generator=g) > 0.8).float()
    bce = F.binary_cross_entropy_with_logits(x, y)
    ln = CALFLoss(scope="dataset", skewness=0.7, kurtosis=0.0)(x, y)
    log10 = CALFLoss(scope="dataset", skewness=3.0, kurtosis=0.0)(x, y)
    assert ln.item() == pytest.approx(bce.item(), rel=1e-5)
    assert log10.item() == pytest.approx(bce.item() / math.log(10), rel=1e-5)


# ---------------------------------------------------------------- batch scope
def _masks_with_areas(areas, side=4):
    masks = torch.zeros(len(areas), 1, side, side)
    for i, a in enumerate(areas):
        masks[i].view(-1)[:a] = 1
    return masks


@pytest.mark.parametrize(
    "areas, branch",
    [
        ([0, 4, 4, 4], "fisher"),  # S = -2/sqrt(3)
        ([0, 4, 4, 6], "logit"),  # S = -0.652
        ([0, 2, 4, 4], "arcsine"),  # S = -0.493
        ([0, 0, 0, 4], "log10"),  # S = 2/sqrt(3)
        ([0, 0, 2, 6], "ln"),  # S = 0.816
        ([0, 0, 2, 4], "log10"),  # S = 0.493, K = -1.37
        ([0, 0, 4, 4], "bce_dice"),  # S = 0
        ([0, 3, 3, 3, 3, 7], "bce_dice"),  # S = 0.486, K = 0.079
        ([0, 0, 0, 0], "bce_dice"),  # all empty: undefined
        ([16, 16, 16, 16], "bce_dice"),  # all foreground: undefined
    ],
)
def test_batch_scope_picks_branch_from_the_batch(areas, branch):
    y = _masks_with_areas(areas)
    x = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    loss = CALFLoss(scope="batch")
    value = loss(x, y)
    assert loss.last_branch == branch
    a = [float(v) for v in areas]
    if len(set(a)) > 1:
        assert loss.last_skewness == pytest.approx(scipy.stats.skew(a))
        assert loss.last_kurtosis == pytest.approx(scipy.stats.kurtosis(a))
    else:
        assert math.isnan(loss.last_skewness)
    # the value is that branch's loss
    s, k = FIXING[branch]
    assert value.item() == pytest.approx(CALFLoss("dataset", s, k)(x, y).item(), rel=1e-6)


def test_batch_scope_switches_and_dataset_scope_does_not():
    batches = [_masks_with_areas([0, 4, 4, 4]), _masks_with_areas([0, 0, 0, 4])]
    x = torch.zeros(4, 1, 4, 4)
    batch_scope = CALFLoss(scope="batch")
    seen = [(batch_scope(x, y), batch_scope.last_branch)[1] for y in batches]
    assert seen == ["fisher", "log10"]
    dataset_scope = CALFLoss(scope="dataset", skewness=0.7, kurtosis=-0.3)
    seen = [(dataset_scope(x, y), dataset_scope.last_branch)[1] for y in batches]
    assert seen == ["ln", "ln"]
    assert dataset_scope.last_skewness == 0.7


def test_empty_batch_value():
    # all-empty masks: bce_dice with Dice term 1 - 1e-7 / (sum(p) + 1e-7)
    y = torch.zeros(2, 1, 2, 2)
    x = torch.zeros(2, 1, 2, 2)
    loss = CALFLoss()
    expected = math.log(2) + 1 - 1e-7 / (8 * 0.5 + 1e-7)
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_contour_area_changes_the_statistic():
    pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    # single pixels: pixel areas (1, 1, 1, 0) are skewed; contour areas are all 0
    y = torch.zeros(4, 1, 8, 8)
    y[0, 0, 1, 1] = y[1, 0, 3, 3] = y[2, 0, 5, 5] = 1
    x = torch.zeros_like(y)
    by_pixels, by_contour = CALFLoss(area="pixels"), CALFLoss(area="contour")
    by_pixels(x, y)
    by_contour(x, y)
    assert by_pixels.last_branch == "fisher"
    assert by_contour.last_branch == "bce_dice"


def test_dataset_scope_needs_statistics():
    with pytest.raises(ValueError, match="needs skewness and kurtosis"):
        CALFLoss(scope="dataset")
    with pytest.raises(ValueError, match="scope must be one of"):
        CALFLoss(scope="epoch")


# ---------------------------------------------------------------- region variant
def _reference_region_loss(x, y, grid):
    """The region-specific CALF (README.md, "Losses") written out region by region in
    plain Python."""
    b, _, h, w = x.shape
    rh, rw = h // grid, w // grid
    num = den = 0.0
    for gi in range(grid):
        for gj in range(grid):
            xs = x[:, 0, gi * rh : (gi + 1) * rh, gj * rw : (gj + 1) * rw].double()
            ys = y[:, 0, gi * rh : (gi + 1) * rh, gj * rw : (gj + 1) * rw].double()
            areas = ys.sum(dim=(1, 2)).tolist()
            if len(set(areas)) > 1:
                s, k = scipy.stats.skew(areas), scipy.stats.kurtosis(areas)
            else:
                s = k = float("nan")
            branch = select_branch(s, k)
            p = torch.sigmoid(xs)
            if branch == "bce_dice":
                bce = -(ys * torch.log(p) + (1 - ys) * torch.log(1 - p)).mean()
                dice = (2 * (p * ys).sum() + 1e-7) / (p.sum() + ys.sum() + 1e-7)
                lr = (bce + 1 - dice).item()
            else:
                p = p.clamp(1e-7, 1 - 1e-7)
                t = {
                    "fisher": torch.atanh,
                    "logit": torch.logit,
                    "arcsine": lambda q: torch.asin(torch.sqrt(q)),
                    "log10": torch.log10,
                    "ln": torch.log,
                }[branch]
                lr = -(ys * t(p) + (1 - ys) * t(1 - p)).mean().item()
            pred = xs > 0
            fp = (pred & (ys == 0)).sum().item()
            fn = (~pred & (ys == 1)).sum().item()
            wr = 1 + fp + fn
            num += wr * lr
            den += wr
    return num / den


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("grid", [1, 2, 4])
def test_region_loss_matches_the_definition(seed, grid):
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(6, 1, 16, 16)
    for i in range(6):  # blobs of varied size so regions fall into varied branches
        r0, c0 = torch.randint(0, 10, (2,), generator=g).tolist()
        size = int(torch.randint(0, 7, (1,), generator=g))
        y[i, 0, r0 : r0 + size, c0 : c0 + size] = 1
    x = 3 * torch.randn(y.shape, generator=g)
    loss = CALFRegionLoss(grid=grid)
    value = loss(x, y)
    assert value.item() == pytest.approx(_reference_region_loss(x, y, grid), rel=1e-5, abs=1e-5)
    assert len(loss.last_branches) == grid * grid
    assert loss.last_branch in BRANCHES


def test_region_grid_one_with_no_errors_is_plain_calf():
    y = _masks_with_areas([0, 0, 0, 4])
    x = torch.where(y > 0, 5.0, -5.0)  # every pixel right: weight 1
    assert CALFRegionLoss(grid=1)(x, y).item() == pytest.approx(CALFLoss()(x, y).item())


def test_region_weights_follow_errors():
    # two regions in the same branch; errors in the right one pull the loss towards it
    y = torch.zeros(4, 1, 2, 4)
    y[0, 0, :, 0] = 1
    y[0, 0, :, 2] = 1
    x = torch.where(y > 0, 4.0, -4.0)
    x[1:, 0, :, 2:] = 0.5  # 12 false positives in the right half
    loss = CALFRegionLoss(grid=2)
    value = loss(x, y).item()
    assert value == pytest.approx(_reference_region_loss(x, y, 2), rel=1e-5)


def test_region_grid_must_divide_the_size():
    with pytest.raises(ValueError, match="not divisible by the region grid 4"):
        CALFRegionLoss(grid=4)(torch.zeros(2, 1, 10, 8), torch.zeros(2, 1, 10, 8))


# ---------------------------------------------------------------- closed forms: exact gradient
@pytest.mark.parametrize("branch", [b for b in BRANCHES if b != "bce_dice"])
def test_transformed_branch_gradient_is_exact(branch):
    from calf.losses import branch_loss

    g = torch.Generator().manual_seed(0)
    x = torch.empty(2, 1, 5, 7, dtype=torch.float64).uniform_(-6, 6, generator=g)
    y = (torch.rand(2, 1, 5, 7, generator=g) > 0.6).double()
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: branch_loss(branch, t, y), (x,))
    # the region path reduces over some dimensions only and uses plain autograd: same values
    per_image = branch_loss(branch, x, y, dims=(1, 2, 3))
    assert per_image.mean().item() == pytest.approx(branch_loss(branch, x, y).item(), rel=1e-12)


@pytest.mark.parametrize("branch", [b for b in BRANCHES if b != "bce_dice"])
def test_no_gradient_where_the_clamp_holds(branch):
    from calf.losses import branch_loss

    x = torch.tensor([-40.0, 40.0, 1.0]).reshape(1, 1, 1, 3).requires_grad_(True)
    y = torch.ones_like(x)
    branch_loss(branch, x, y).backward()
    assert x.grad[0, 0, 0, 0] == 0 and x.grad[0, 0, 0, 1] == 0
    assert x.grad[0, 0, 0, 2] < 0  # raising a tumour logit lowers the loss


# ---------------------------------------------------------------- fast paths, same values
def _reference_calf(x, y):
    """CALF batch scope written out: areas, scipy's S and K, the branch's formula on the
    clamped probability, in float64 with plain autograd."""
    areas = y.double().sum(dim=(1, 2, 3)).tolist()
    s, k = scipy.stats.skew(areas), scipy.stats.kurtosis(areas)
    branch = select_branch(s, k) if len(set(areas)) > 1 else "bce_dice"
    xd = x.double().detach().requires_grad_(True)
    yd = y.double()
    p = torch.sigmoid(xd)
    if branch == "bce_dice":
        bce = -(yd * torch.log(p) + (1 - yd) * torch.log(1 - p)).mean()
        value = bce + 1 - (2 * (p * yd).sum() + 1e-7) / (p.sum() + yd.sum() + 1e-7)
    else:
        p = p.clamp(1e-7, 1 - 1e-7)
        t = {"fisher": torch.atanh, "logit": torch.logit, "log10": torch.log10, "ln": torch.log,
             "arcsine": lambda q: torch.asin(torch.sqrt(q))}[branch]
        value = -(yd * t(p) + (1 - yd) * t(1 - p)).mean()
    value.backward()
    return branch, value.item(), xd.grad


# logits inside the clamp (+-16.1), and a fifth of them beyond it
@pytest.mark.parametrize("scale", [2.0, 12.0])
@pytest.mark.parametrize("areas", [[0, 0, 0, 30], [0, 9, 16, 30], [30, 30, 20, 0], [0] * 4])
@pytest.mark.parametrize("check_target", [True, False])
def test_batch_scope_matches_the_definition(scale, areas, check_target):
    y = _masks_with_areas(areas, side=8)
    x = scale * torch.randn(y.shape, generator=torch.Generator().manual_seed(len(areas)))
    x.requires_grad_(True)
    branch, expected, grad = _reference_calf(x, y)
    loss = CALFLoss(check_target=check_target)
    value = loss(x, y)
    value.backward()
    assert loss.last_branch == branch
    # float32 against float64: BCE terms of ~30 at the large logits cost digits
    assert value.item() == pytest.approx(expected, rel=1e-5 if scale < 10 else 1e-4, abs=1e-6)
    torch.testing.assert_close(x.grad.double(), grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("scale", [3.0, 12.0])
@pytest.mark.parametrize("check_target", [True, False])
def test_region_loss_matches_the_definition_beyond_the_clamp(scale, check_target):
    g = torch.Generator().manual_seed(7)
    y = torch.zeros(6, 1, 16, 16)
    for i in range(6):
        y[i, 0, i : i + 2 * i, 3 : 3 + i] = 1
    x = scale * torch.randn(y.shape, generator=g)
    value = CALFRegionLoss(grid=4, check_target=check_target)(x, y)
    rel = 1e-5 if scale < 10 else 1e-4  # float32 against float64, BCE terms of ~30
    assert value.item() == pytest.approx(_reference_region_loss(x, y, 4), rel=rel, abs=1e-5)


def test_region_gradient_reaches_every_region_once():
    # the rows' backward copies each region's gradient back: equal to a loss on the
    # regions taken by plain slicing
    y = _masks_with_areas([0, 3, 9, 16], side=8)
    x = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), requires_grad=True)
    CALFRegionLoss(grid=2)(x, y).backward()
    eps = 1e-2  # float32 loss: a wide step; no pixel below changes its sign (weights fixed)
    for idx in [(0, 0, 0, 0), (1, 0, 5, 2), (3, 0, 7, 7), (2, 0, 1, 6)]:
        assert abs(x[idx].item()) > 2 * eps
        up, down = x.detach().clone(), x.detach().clone()
        up[idx] += eps
        down[idx] -= eps
        numeric = (CALFRegionLoss(grid=2)(up, y) - CALFRegionLoss(grid=2)(down, y)) / (2 * eps)
        assert x.grad[idx].item() == pytest.approx(numeric.item(), rel=2e-2, abs=1e-6)


@pytest.mark.parametrize("make", [CALFLoss, CALFRegionLoss])
def test_target_check_on_by_default_and_off_on_request(make):
    x = torch.zeros(2, 1, 8, 8)
    y = torch.full((2, 1, 8, 8), 0.5)
    with pytest.raises(ValueError, match=r"target must hold only 0 and 1, found \[0.5\]"):
        make()(x, y)
    assert math.isfinite(make(check_target=False)(x, y).item())  # trusted, not checked
