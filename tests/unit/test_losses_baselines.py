import math

import monai.losses
import pytest
import torch
import torch.nn.functional as F

from calf.losses import build_loss

LN2 = math.log(2.0)


def _two_images():
    """Two 1 x 2 x 2 images, logits 0 (p = 0.5) everywhere; one tumour pixel in image 0."""
    y = torch.zeros(2, 1, 2, 2)
    y[0, 0, 0, 0] = 1
    return torch.zeros_like(y), y


# Worked by hand with p = 0.5 everywhere:
#   image 0: TP 0.5, FP 1.5, FN 0.5, sum p 2, sum y 1; image 1: TP 0, FP 2, FN 0, sum y 0
#   dice: 2*0.5/(3+1e-5) and 0;  iou: 0.5/(2.5+1e-5) and 0;
#   tversky: 0.5/(0.5+0.7*1.5+0.3*0.5+1e-5) and 0
#   focal: alpha_t * (1-0.5)^2 * ln 2 averaged: (0.25 + 7 * 0.75)/8 * 0.25 * ln 2
HAND = {
    "bce": LN2,
    "dice": 1 - (1 / (3 + 1e-5)) / 2,
    "iou": 1 - (0.5 / (2.5 + 1e-5)) / 2,
    "tversky": 1 - (0.5 / (1.7 + 1e-5)) / 2,
    "focal": (0.25 + 7 * 0.75) / 8 * 0.25 * LN2,
    "combo": LN2 + 1 - (1 / (3 + 1e-5)) / 2,
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_authors_baselines_hand_checked(name):
    x, y = _two_images()
    loss = build_loss(name)
    assert loss.definition == "authors"
    assert loss(x, y).item() == pytest.approx(HAND[name], rel=1e-6)


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_authors_overlap_losses_give_empty_masks_a_constant_one(name):
    # no numerator smoothing: an empty mask scores 0 whatever the prediction
    y = torch.zeros(1, 1, 4, 4)
    for logit in (-20.0, 0.0, 20.0):
        x = torch.full_like(y, logit, requires_grad=True)
        value = build_loss(name)(x, y)
        assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_monai_dice_rewards_an_empty_prediction_on_an_empty_mask():
    y = torch.zeros(1, 1, 4, 4)
    x = torch.full_like(y, -30.0)
    assert build_loss("monai_dice")(x, y).item() == pytest.approx(0.0, abs=1e-5)


def test_focal_reduces_to_weighted_bce_when_gamma_is_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.empty(2, 1, 8, 8).uniform_(-4, 4, generator=g)
    y = (torch.rand(2, 1, 8, 8, generator=g) > 0.7).float()
    weights = 0.25 * y + 0.75 * (1 - y)
    expected = F.binary_cross_entropy_with_logits(x, y, weight=weights)
    assert build_loss("focal", gamma=0.0)(x, y).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "name, cls, kwargs",
    [
        ("monai_dice", monai.losses.DiceLoss, {"sigmoid": True}),
        ("monai_dicece", monai.losses.DiceCELoss, {"sigmoid": True}),
        ("monai_focal", monai.losses.FocalLoss, {"gamma": 2.0, "alpha": 0.25}),
        ("monai_tversky", monai.losses.TverskyLoss, {"sigmoid": True, "alpha": 0.7, "beta": 0.3}),
    ],
)
def test_standard_losses_are_monai(name, cls, kwargs):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 1, 8, 8, generator=g)
    y = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    loss = build_loss(name)
    assert loss.definition == "monai"
    assert isinstance(loss.inner, cls)
    assert loss(x, y).item() == pytest.approx(cls(**kwargs)(x, y).item(), rel=1e-6)


def test_losses_are_modules_with_gradients():
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    for name in sorted(HAND):
        x.grad = None
        build_loss(name)(x, y).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
