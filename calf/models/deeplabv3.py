"""The authors' DeepLabV3 (SPEC.md section 5), from MONAI blocks.

Backbone: a Conv7x7/2-BN-ReLU stem and a 3x3/2 max pool, then four plain stages (no residual
connections) of 3, 4, 6 and 3 Conv3x3-BN-ReLU layers with 64, 128, 256 and 512 channels, the
first layer of stages 2-4 with stride 2: output stride 32. ASPP (a 1x1 branch, three 3x3
branches dilated 6, 12 and 18, an image-pooling branch) to 256 channels, projected by a
1x1 conv-BN-ReLU and dropout 0.5; head Conv3x3-BN-ReLU then a 1x1 conv to the logits;
bilinear upsampling x32 back to the input size. At full width, 1 channel in and 1 out:
14,502,209 parameters, as the authors' network.

The image-pooling branch has a BatchNorm on a 1 x 1 map, so in training mode a batch needs
at least two samples (as in torchvision's DeepLabV3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from calf.models.sizes import check_input_size, check_width, scaled_channels

STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # (channels, Conv3x3-BN-ReLU layers)
STEM_CHANNELS = 64
ASPP_CHANNELS = 256
ASPP_DILATIONS = (6, 12, 18)


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
) -> Convolution:
    """Conv (no bias, 'same' padding) - BatchNorm - ReLU."""
    return Convolution(
        2,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=kernel_size,
        dilation=dilation,
        act="RELU",
        norm="BATCH",
        bias=False,
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: five parallel branches, concatenated and projected."""

    def __init__(self, in_channels: int, out_channels: int, dilations=ASPP_DILATIONS, dropout=0.5):
        super().__init__()
        branches = [conv_bn_relu(in_channels, out_channels, kernel_size=1)]
        branches += [conv_bn_relu(in_channels, out_channels, dilation=d) for d in dilations]
        self.branches = nn.ModuleList(branches)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, out_channels, kernel_size=1)
        )
        self.project = Convolution(
            2,
            (len(branches) + 1) * out_channels,
            out_channels,
            kernel_size=1,
            adn_ordering="NAD",
            act="RELU",
            norm="BATCH",
            dropout=dropout,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3(nn.Module):
    """DeepLabV3 with ``width`` scaling every channel count; one logit map of the input's size."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: float = 1.0):
        super().__init__()
        width = check_width(width)
        stem = scaled_channels(STEM_CHANNELS, width)
        layers: list[nn.Module] = [
            conv_bn_relu(in_channels, stem, kernel_size=7, stride=2),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        c_in = stem
        for index, (channels, depth) in enumerate(STAGES):
            c = scaled_channels(channels, width)
            for layer in range(depth):
                stride = 2 if index > 0 and layer == 0 else 1
                layers.append(conv_bn_relu(c_in, c, stride=stride))
                c_in = c
        self.backbone = nn.Sequential(*layers)
        aspp = scaled_channels(ASPP_CHANNELS, width)
        self.aspp = ASPP(c_in, aspp)
        self.head = nn.Sequential(
            conv_bn_relu(aspp, aspp),
            Convolution(2, aspp, out_channels, kernel_size=1, conv_only=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape, "deeplabv3")
        logits = self.head(self.aspp(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
