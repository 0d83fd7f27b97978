"""The authors' DeepLabV3, from MONAI blocks.

Backbone: a Conv7x7/2-BN-ReLU stem and a 3x3/2 max pool, then four plain stages (no residual
connections) of 3, 4, 6 and 3 Conv3x3-BN-ReLU layers with 64, 128, 256 and 512 channels, the
first layer of stages 2-4 with stride 2: output stride 32. ASPP (a 1x1 branch, three 3x3
branches dilated 6, 12 and 18, an image-pooling branch) to 256 channels, projected by a
1x1 conv-BN-ReLU and dropout 0.5; head Conv3x3-BN-ReLU then a 1x1 conv to the logits;
bilinear upsampling x32 back to the input size. At full width, 1 channel in and 1 out:
14,502,209 parameters, as the authors' network.

``output_stride`` (a protocol switch, recorded with each run): 32, the authors' network, or
the DeepLabV3 paper's atrous backbones (Chen et al. 2017): 16 (stage 4 without its stride,
dilated 2) or 8 (stages 3 and 4 without their strides, dilated 2 and 4), with the ASPP rates
doubled at 8 (12, 24, 36), as that paper does. Same parameters at every stride; a finer
stride resolves small inputs (at 64 x 64 the authors' stride leaves a 2 x 2 feature map)
at the cost of larger feature maps in the late stages.

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
OUTPUT_STRIDES = (8, 16, 32)


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

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: float = 1.0,
                 output_stride: int = 32):
        super().__init__()
        width = check_width(width)
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride {output_stride!r}: expected one of "
                             f"{', '.join(map(str, OUTPUT_STRIDES))}")
        # stages 3 and 4 trade their stride for dilation at output strides 8 and 16
        atrous = {32: 0, 16: 1, 8: 2}[output_stride]
        stem = scaled_channels(STEM_CHANNELS, width)
        layers: list[nn.Module] = [
            conv_bn_relu(in_channels, stem, kernel_size=7, stride=2),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        c_in = stem
        dilation = 1
        for index, (channels, depth) in enumerate(STAGES):
            c = scaled_channels(channels, width)
            dilated = index >= len(STAGES) - atrous
            for layer in range(depth):
                stride = 2 if index > 0 and layer == 0 and not dilated else 1
                if dilated and layer == 0:
                    dilation *= 2
                layers.append(conv_bn_relu(c_in, c, stride=stride, dilation=dilation))
                c_in = c
        self.backbone = nn.Sequential(*layers)
        aspp = scaled_channels(ASPP_CHANNELS, width)
        rates = tuple(2 * d for d in ASPP_DILATIONS) if output_stride == 8 else ASPP_DILATIONS
        self.aspp = ASPP(c_in, aspp, dilations=rates)
        self.head = nn.Sequential(
            conv_bn_relu(aspp, aspp),
            Convolution(2, aspp, out_channels, kernel_size=1, conv_only=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape, "deeplabv3")
        logits = self.head(self.aspp(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
