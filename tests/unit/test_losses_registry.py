import monai.losses
import pytest
import torch
from torch import nn

from calf.losses import LOSSES, CALFLoss, CALFRegionLoss, build_loss, register_loss

EXPECTED_NAMES = {
    "calf",
    "calf_region",
    "bce",
    "dice",
    "iou",
    "tversky",
    "focal",
    "combo",
    "monai_dice",
    "monai_dicece",
    "monai_focal",
    "monai_tversky",
}


def test_every_name_is_registered_and_builds():
    assert EXPECTED_NAMES <= set(LOSSES)
    for name in EXPECTED_NAMES:
        assert isinstance(build_loss(name), nn.Module)


def test_kwargs_reach_the_loss():
    loss = build_loss("calf", scope="dataset", skewness=-3.0, kurtosis=0.0)
    assert isinstance(loss, CALFLoss) and loss.last_branch == "fisher"
    assert build_loss("calf_region", grid=8).grid == 8
    assert isinstance(build_loss("calf_region"), CALFRegionLoss)
    assert build_loss("tversky", alpha=0.5).alpha == 0.5


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'dicee'; known losses: bce, calf") as err:
        build_loss("dicee")
    for name in EXPECTED_NAMES:
        assert name in str(err.value)


def test_bad_kwargs_name_the_loss():
    with pytest.raises(ValueError, match="loss 'dice'.*smoothing"):
        build_loss("dice", smoothing=1.0)


def test_import_path_builds_a_monai_loss_on_logits():
    loss = build_loss("monai.losses.GeneralizedDiceLoss")
    assert isinstance(loss.inner, monai.losses.GeneralizedDiceLoss)
    assert loss.definition == "import:monai.losses.GeneralizedDiceLoss"
    x = torch.randn(2, 1, 8, 8)
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    expected = monai.losses.GeneralizedDiceLoss(sigmoid=True)(x, y)
    assert loss(x, y).item() == pytest.approx(expected.item())
    # an explicit activation choice is respected
    probs = build_loss("monai.losses.GeneralizedDiceLoss", sigmoid=False)
    assert probs.inner.sigmoid is False


def test_import_path_with_kwargs_and_torch_losses():
    loss = build_loss("monai.losses.TverskyLoss", alpha=0.9, beta=0.1)
    assert loss.inner.alpha == 0.9
    bce = build_loss("torch.nn.BCEWithLogitsLoss")
    x, y = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert bce(x, y).item() == pytest.approx(0.6931472)


@pytest.mark.parametrize(
    "path, message",
    [
        ("monai.losses.NoSuchLoss", "cannot import loss 'monai.losses.NoSuchLoss'"),
        ("nosuchpackage.Loss", "cannot import loss 'nosuchpackage.Loss'"),
        ("math.pi", "not a class or factory"),
    ],
)
def test_bad_import_paths(path, message):
    with pytest.raises(ValueError, match=message):
        build_loss(path)


def test_register_loss_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_loss("bce", nn.BCEWithLogitsLoss)
