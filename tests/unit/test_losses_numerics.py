"""Every loss: float32 under autocast, finite for extreme logits, NaN kept, bad input named."""

import math

import pytest
import torch

from calf.losses import LOSSES, CALFLoss, build_loss

# every registered loss, plus CALF fixed to each branch in dataset scope
FIXED = {
    "calf[fisher]": (-2.0, 0.0),
    "calf[logit]": (-0.7, 0.0),
    "calf[arcsine]": (-0.2, 0.0),
    "calf[log10]": (1.5, 0.0),
    "calf[ln]": (0.7, 0.0),
    "calf[bce_dice]": (0.2, 1.0),
}
ALL = sorted(LOSSES) + sorted(FIXED)


def make(name):
    if name in FIXED:
        s, k = FIXED[name]
        return CALFLoss(scope="dataset", skewness=s, kurtosis=k)
    if name == "calf_region":
        return build_loss(name, grid=2)
    return build_loss(name)


def batch(shape=(4, 1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(shape)
    for i in range(shape[0]):  # a different tumour size per image
        y[i].view(-1)[: 3 * i] = 1
    x = torch.randn(shape, generator=g)
    return x, y


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("magnitude", [50.0, 1e4, math.inf])
def test_finite_value_and_gradient_for_extreme_logits(name, magnitude):
    _, y = batch()
    signs = torch.where(torch.arange(y.numel()).reshape(y.shape) % 3 == 0, -1.0, 1.0)
    x = (signs * magnitude).requires_grad_(True)
    value = make(name)(x, y)
    value.backward()
    assert torch.isfinite(value), f"{name}: {value}"
    assert torch.isfinite(x.grad).all(), name


@pytest.mark.parametrize("name", ALL)
def test_nan_logits_give_nan(name):
    x, y = batch()
    x[0, 0, 0, 0] = float("nan")
    assert torch.isnan(make(name)(x, y))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_float32_under_autocast(name, dtype):
    x, y = batch()
    x = x.to(dtype)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        value = make(name)(x, y)
    assert value.dtype == torch.float32
    reference = make(name)(x.float(), y)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_3d_inputs(name):
    x, y = batch(shape=(4, 1, 4, 4, 4))
    x.requires_grad_(True)
    value = make(name)(x, y)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", ALL)
def test_empty_and_full_masks_are_finite(name):
    x, _ = batch()
    for y in (torch.zeros_like(x), torch.ones_like(x)):
        assert torch.isfinite(make(name)(x, y))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan")])
def test_non_binary_target_is_named(name, bad):
    x, y = batch()
    y[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="target must hold only 0 and 1") as err:
        make(name)(x, y)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_shape_mismatch_names_both_shapes(name):
    x, y = batch()
    with pytest.raises(ValueError, match=r"logits \(4, 1, 8, 8\), target \(4, 1, 8, 4\)"):
        make(name)(x, y[..., :4])


def test_bool_targets_are_accepted():
    x, y = batch()
    assert make("calf")(x, y.bool()).item() == pytest.approx(make("calf")(x, y).item())


def test_multi_channel_input_is_rejected():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        make("bce")(x, x)
