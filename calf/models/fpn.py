"""The authors' FPN: a MONAI ResNet bottleneck backbone and a P2 head.

Backbone: MONAI's ``ResNet`` with bottleneck blocks, two per stage (64-128-256-512 planes,
256-512-1024-2048 output channels), a Conv7x7/2 stem and a max pool: C2..C5 at strides
4..32. Top-down path: a 1x1 conv on C5 gives P5; each finer level adds a 1x1 lateral conv
of C4, C3, C2 to the bilinearly upsampled level above, down to P2 (256 channels). Only P2
is smoothed (3x3 conv), then a 1x1 conv gives the logits, upsampled bilinearly to the input
size (``align_corners=True``, as the authors did). MONAI's ``FeaturePyramidNetwork`` smooths
every level and upsamples with nearest neighbours, so the top-down path is written here.
At full width, 1 channel in and 1 out: 15,514,305 parameters, as the authors' network.

Initialisation, a protocol switch (``init``): ``monai`` (the suite's default) keeps MONAI
``ResNet``'s re-initialisation of every backbone conv with ``kaiming_normal_(fan_out)``;
``pytorch`` (the authors') resets every conv to PyTorch's default (``Conv2d.reset_parameters``,
Kaiming-uniform with a = sqrt(5)). The pyramid's convs have PyTorch's default either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets import ResNet
from torch import nn

from calf.models.sizes import check_input_size, check_width, scaled_channels

PLANES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)
PYRAMID_CHANNELS = 256
EXPANSION = 4  # output channels of a bottleneck block per plane
INITS = ("monai", "pytorch")


def conv1x1(in_channels: int, out_channels: int) -> Convolution:
    return Convolution(2, in_channels, out_channels, kernel_size=1, conv_only=True)


class FPN(nn.Module):
    """FPN with ``width`` scaling every channel count; one logit map of the input's size."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: float = 1.0,
                 init: str = "monai"):
        super().__init__()
        width = check_width(width)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        planes = [scaled_channels(p, width) for p in PLANES]
        self.backbone = ResNet(
            block="bottleneck",
            layers=list(BLOCKS_PER_STAGE),
            block_inplanes=planes,
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )
        pyramid = scaled_channels(PYRAMID_CHANNELS, width)
        # laterals[0] reads C5 (the authors' "top layer"), laterals[3] reads C2
        self.laterals = nn.ModuleList(conv1x1(EXPANSION * p, pyramid) for p in reversed(planes))
        self.smooth = Convolution(2, pyramid, pyramid, kernel_size=3, conv_only=True)
        self.head = conv1x1(pyramid, out_channels)
        if init == "pytorch":
            for module in self.backbone.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """C2, C3, C4, C5 of the backbone."""
        b = self.backbone
        x = b.maxpool(b.act(b.bn1(b.conv1(x))))
        out = []
        for stage in (b.layer1, b.layer2, b.layer3, b.layer4):
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape, "fpn")
        c_maps = self.features(x)[::-1]  # C5 first
        p = self.laterals[0](c_maps[0])
        for lateral, c in zip(self.laterals[1:], c_maps[1:]):
            p = F.interpolate(p, size=c.shape[-2:], mode="bilinear", align_corners=False)
            p = p + lateral(c)
        logits = self.head(self.smooth(p))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)
