"""The authors' U-Net, DeepLabV3 and FPN and the model registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from calf.models import MODELS, build_model, count_parameters, describe

NAMES = ["unet", "deeplabv3", "fpn"]
SMALL = 0.125  # width for fast tests


# ---- parameter counts by hand, from the architecture the models' docstrings state ----


def _ch(channels: int, width: float) -> int:
    return max(4, round(channels * width))


def _conv(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _bn(c: int) -> int:
    return 2 * c


def unet_count(w: float) -> int:
    def double(c_in, c_out):  # (Conv3x3 with bias - BN - ReLU) x 2
        return _conv(c_in, c_out, 3, True) + _conv(c_out, c_out, 3, True) + 2 * _bn(c_out)

    levels = [_ch(c, w) for c in (64, 128, 256, 512)]
    total, c_in = 0, 1
    for c in levels:
        total += double(c_in, c)
        c_in = c
    total += double(c_in, _ch(1024, w))
    c_in = _ch(1024, w)
    for c in reversed(levels):
        total += _conv(c_in, c, 2, True) + double(2 * c, c)  # transposed 2x2, then the block
        c_in = c
    return total + _conv(c_in, 1, 1, True)


def deeplab_count(w: float) -> int:
    def cbr(c_in, c_out, k):  # Conv without bias - BN - ReLU
        return _conv(c_in, c_out, k, False) + _bn(c_out)

    total, c_in = cbr(1, _ch(64, w), 7), _ch(64, w)
    for channels, depth in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for _ in range(depth):
            total += cbr(c_in, _ch(channels, w), 3)
            c_in = _ch(channels, w)
    a = _ch(256, w)
    total += 2 * cbr(c_in, a, 1) + 3 * cbr(c_in, a, 3)  # 1x1, image pooling, three dilated
    total += cbr(5 * a, a, 1) + cbr(a, a, 3) + _conv(a, 1, 1, True)  # projection, head
    return total


def fpn_count(w: float) -> int:
    total, c_in = _conv(1, _ch(64, w), 7, False) + _bn(_ch(64, w)), _ch(64, w)
    for planes in (_ch(p, w) for p in (64, 128, 256, 512)):
        for block in range(2):
            total += _conv(c_in, planes, 1, False) + _conv(planes, planes, 3, False)
            total += _conv(planes, 4 * planes, 1, False) + 2 * _bn(planes) + _bn(4 * planes)
            if block == 0:  # projection shortcut, 1x1 without bias + BN
                total += _conv(c_in, 4 * planes, 1, False) + _bn(4 * planes)
            c_in = 4 * planes
    p = _ch(256, w)
    c_channels = [4 * _ch(c, w) for c in (64, 128, 256, 512)]
    total += sum(_conv(c, p, 1, True) for c in c_channels)  # top layer and laterals
    return total + _conv(p, p, 3, True) + _conv(p, 1, 1, True)


COUNTS = {"unet": unet_count, "deeplabv3": deeplab_count, "fpn": fpn_count}
# the authors' networks at full width (1 channel in, 1 out), counted from their code
FULL_WIDTH = {"unet": 31_042_369, "deeplabv3": 14_502_209, "fpn": 15_514_305}


def meta_count(name: str, width: float, trainable_only: bool = False) -> int:
    """Parameters of the real network, built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        return count_parameters(build_model(name, width=width), trainable_only=trainable_only)


@pytest.mark.parametrize("name", NAMES)
def test_full_width_parameter_count(name):
    assert meta_count(name, 1.0) == FULL_WIDTH[name] == COUNTS[name](1.0)
    assert meta_count(name, 1.0, trainable_only=True) == FULL_WIDTH[name]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [0.5, 0.25, 0.125, 0.01])
def test_width_scales_parameter_count(name, width):
    n = meta_count(name, width)
    assert n == COUNTS[name](width)
    assert n < FULL_WIDTH[name]


@pytest.mark.parametrize("name", NAMES)
def test_half_width_has_about_a_quarter_of_the_parameters(name):
    assert 0.24 < meta_count(name, 0.5) / FULL_WIDTH[name] < 0.26


def test_count_parameters_counts_trainable_only_when_asked():
    model = build_model("deeplabv3", width=SMALL)
    head = model.head[-1].conv  # the last 1x1 conv: 32 weights and a bias
    head.requires_grad_(False)
    all_params = count_parameters(model)
    assert all_params == COUNTS["deeplabv3"](SMALL)
    assert count_parameters(model, trainable_only=True) == all_params - 33


# ---- forward and backward ----


@pytest.fixture(scope="module")
def small_models():
    torch.manual_seed(0)
    return {name: build_model(name, width=SMALL).eval() for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 64, 64), (1, 64, 96), (2, 96, 32)])
def test_output_is_one_logit_map_of_input_size(small_models, name, shape):
    batch, height, width = shape
    with torch.no_grad():
        y = small_models[name](torch.randn(batch, 1, height, width))
    assert y.shape == (batch, 1, height, width)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_in_and_out_channels(name):
    model = build_model(name, in_channels=3, out_channels=2, width=SMALL).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradient_for_every_parameter(name):
    torch.manual_seed(1)
    model = build_model(name, width=SMALL).train()
    x = torch.randn(2, 1, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.8).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic(small_models, name):
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(small_models[name](x), small_models[name](x))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_builds_same_weights(name):
    torch.manual_seed(12345)
    a = build_model(name, width=SMALL).state_dict()
    torch.manual_seed(12345)
    b = build_model(name, width=SMALL).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(2)
    model = build_model(name, width=SMALL).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == (2, 1, 64, 64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("height,width", [(48, 64), (64, 80), (100, 100)])
def test_size_not_divisible_by_32_is_refused(small_models, name, height, width):
    with pytest.raises(
        ValueError, match=f"{name} needs .* divisible by 32, got {height} x {width}"
    ):
        small_models[name](torch.zeros(1, 1, height, width))


@pytest.mark.parametrize("name", NAMES)
def test_input_without_batch_dimension_is_refused(small_models, name):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) input, got shape \(1, 64, 64\)"):
        small_models[name](torch.zeros(1, 64, 64))


# ---- registry ----


def test_registry_names():
    assert sorted(MODELS) == sorted(NAMES)


def test_unknown_name_lists_known_models():
    with pytest.raises(
        ValueError, match="unknown model 'resnet'; known models: deeplabv3, fpn, unet"
    ):
        build_model("resnet")


@pytest.mark.parametrize("width", [0, -0.5, float("nan"), float("inf"), "wide"])
def test_bad_width_is_refused(width):
    with pytest.raises(ValueError, match="width must be a positive number"):
        build_model("unet", width=width)


def test_unexpected_keyword_names_the_model():
    with pytest.raises(ValueError, match="model 'fpn': .*depth"):
        build_model("fpn", depth=3)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        (
            "monai.networks.nets.NoSuchNet",
            {},
            "cannot import model 'monai.networks.nets.NoSuchNet'",
        ),
        ("no_such_package.Net", {}, "cannot import model 'no_such_package.Net'"),
        ("math.pi", {}, "'math.pi' is not a class or factory"),
        ("collections.OrderedDict", {}, "did not build a torch.nn.Module"),
        ("torch.nn.Flatten", {"in_channels": 3}, "takes no 'in_channels' argument"),
        (
            "monai.networks.nets.BasicUNet",
            {"width": 0.5},
            "width applies to unet, deeplabv3, fpn only",
        ),
        (
            "monai.networks.nets.BasicUNet",
            {"colour": "red"},
            "model 'monai.networks.nets.BasicUNet'",
        ),
    ],
)
def test_import_path_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, **kwargs)


def test_import_path_model_builds_and_runs():
    from monai.networks.nets import BasicUNet

    features = (4, 4, 8, 8, 16, 4)
    model = build_model("monai.networks.nets.BasicUNet", features=features).eval()
    assert isinstance(model, BasicUNet)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    # in/out channels go through under MONAI's names; spatial_dims=2 is added
    wide = build_model("monai.networks.nets.BasicUNet", 2, 3, features=features).eval()
    with torch.no_grad():
        assert wide(torch.randn(1, 2, 32, 32)).shape == (1, 3, 32, 32)


def test_import_path_without_channel_arguments_builds_with_defaults():
    model = build_model("torch.nn.Flatten", start_dim=2)
    assert model(torch.zeros(1, 1, 4, 4)).shape == (1, 1, 16)


# ---- describe, and a light import ----


@pytest.mark.parametrize("name", NAMES)
def test_describe(name):
    text = describe(name, width=SMALL, size=64)
    n = count_parameters(build_model(name, width=SMALL))
    assert f"model: {name} (width 0.125" in text
    assert f"parameters: {n:,} " in text
    assert "input (1, 1, 64, 64) -> output (1, 1, 64, 64): ok" in text
    flops = float(text.split("forward: ")[1].split(" GFLOPs")[0])
    assert flops > 0


def test_describe_refuses_a_model_with_the_wrong_output_shape():
    with pytest.raises(ValueError, match=r"gives output \(1, 1024\) for input \(1, 1, 32, 32\)"):
        describe("torch.nn.Flatten", size=32)


def test_describe_counts_unet_flops():
    # U-Net at width 0.25 (16..256 channels), 64 x 64: 2 x multiply-accumulates of every conv
    text = describe("unet", width=0.25, size=64)
    macs, c_in, side = 0, 1, 64
    for c in (16, 32, 64, 128):
        macs += side * side * 9 * (c_in * c + c * c)
        c_in, side = c, side // 2
    macs += side * side * 9 * (128 * 256 + 256 * 256)
    for c in (128, 64, 32, 16):
        side *= 2  # a 2x2 transposed conv from the coarser map, then the block
        macs += (side // 2) ** 2 * 4 * (2 * c * c) + side * side * 9 * (2 * c * c + c * c)
    macs += 64 * 64 * 16
    assert f"forward: {2 * macs / 1e9:.2f} GFLOPs per 64 x 64 slice" in text


def test_import_is_light():
    code = "import sys, calf.models; print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---- initialisation: PyTorch's default (the authors') or MONAI ResNet's (the suite's FPN) ----

INIT_WIDTH = 0.5
MIN_WEIGHTS = 1024  # convs with fewer weights give too noisy a standard deviation


def _fresh_std(conv: torch.nn.Module) -> float:
    """Weight std of a freshly constructed conv of the same type and shape (PyTorch's init)."""
    fresh = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size,
                       groups=conv.groups, bias=conv.bias is not None)
    return fresh.weight.std().item()


def _conv_ratios(model: torch.nn.Module, prefix: str = "") -> dict[str, tuple[float, float]]:
    """name -> (weight std / fresh conv's std, sqrt(6 fan_in / fan_out)) of every large conv.

    sqrt(6 fan_in / fan_out) is the ratio of kaiming_normal_(fan_out, relu), std
    sqrt(2 / fan_out), to PyTorch's default Kaiming-uniform(a = sqrt(5)), std 1 / sqrt(3 fan_in).
    """
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and name.startswith(prefix):
            if m.weight.numel() >= MIN_WEIGHTS:
                receptive = m.weight[0, 0].numel()
                fan_in = m.in_channels // m.groups * receptive
                fan_out = m.out_channels // m.groups * receptive
                out[name] = (m.weight.std().item() / _fresh_std(m), (6 * fan_in / fan_out) ** 0.5)
    return out


@pytest.mark.parametrize("name,kwargs", [("unet", {}), ("deeplabv3", {}),
                                         ("fpn", {"init": "pytorch"})])
def test_pytorch_default_init_matches_a_fresh_conv(name, kwargs):
    torch.manual_seed(0)
    ratios = _conv_ratios(build_model(name, width=INIT_WIDTH, **kwargs))
    assert len(ratios) >= 10
    bad = {k: round(r, 3) for k, (r, _) in ratios.items() if not 0.9 < r < 1.1}
    assert not bad


def test_fpn_monai_init_is_kaiming_fan_out_in_the_backbone():
    torch.manual_seed(0)
    model = build_model("fpn", width=INIT_WIDTH)  # the default: init "monai"
    assert model.init == "monai"
    backbone = _conv_ratios(model, "backbone.")
    assert len(backbone) >= 10
    for name, (ratio, kaiming) in backbone.items():
        assert ratio == pytest.approx(kaiming, rel=0.1), name
    # the measured range of the suite/authors ratios: 0.31 (stem) to 4.95
    assert min(k for _, k in backbone.values()) < 0.5 and max(k for _, k in backbone.values()) > 4
    # the pyramid keeps PyTorch's default either way
    pyramid = {k: r for k, (r, _) in _conv_ratios(model).items() if not k.startswith("backbone.")}
    assert pyramid and all(0.9 < r < 1.1 for r in pyramid.values())


def test_fpn_init_changes_weights_only():
    torch.manual_seed(0)
    monai_init = build_model("fpn", width=SMALL)
    torch.manual_seed(0)
    pytorch_init = build_model("fpn", width=SMALL, init="pytorch")
    assert count_parameters(monai_init) == count_parameters(pytorch_init)
    assert not torch.equal(monai_init.backbone.conv1.weight, pytorch_init.backbone.conv1.weight)


def test_fpn_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of monai, pytorch, got 'xavier'"):
        build_model("fpn", width=SMALL, init="xavier")


def test_default_init_table_matches_the_networks():
    from calf.protocol import DEFAULT_INIT

    assert build_model("fpn", width=SMALL).init == DEFAULT_INIT["fpn"] == "monai"
    assert set(DEFAULT_INIT) == set(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("stride, feature", [(32, 2), (16, 4), (8, 8)])
def test_deeplabv3_output_stride_keeps_the_parameters_and_refines_the_features(stride, feature):
    model = build_model("deeplabv3", width=SMALL, output_stride=stride)
    # the same weights at every stride (strides become dilations): the authors' count
    assert count_parameters(model) == COUNTS["deeplabv3"](SMALL)
    x = torch.rand(2, 1, 64, 64)
    assert model.backbone(x).shape[-2:] == (feature, feature)
    assert model(x).shape == x.shape
    rates = [b.conv.dilation[0] for b in model.aspp.branches[1:]]
    assert rates == ([12, 24, 36] if stride == 8 else [6, 12, 18])


def test_deeplabv3_refuses_another_output_stride():
    with pytest.raises(ValueError, match="output_stride 4: expected one of 8, 16, 32"):
        build_model("deeplabv3", width=SMALL, output_stride=4)
