"""The authors' U-Net, from MONAI blocks.

Four encoder levels of 64-128-256-512 channels and a 1024-channel bottleneck, each a
(Conv3x3-BN-ReLU) x 2 block (convolutions with bias, as the authors wrote them), 2x2 max
pooling down, 2x2 transposed convolutions up, skip concatenation, and a 1x1 head. At full
width, 1 channel in and 1 out, it has 31,042,369 parameters, as the authors' network.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

from calf.models.sizes import check_input_size, check_width, scaled_channels

ENCODER_CHANNELS = (64, 128, 256, 512)
BOTTLENECK_CHANNELS = 1024


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(Conv3x3-BN-ReLU) x 2."""
    return nn.Sequential(
        *(
            Convolution(2, c_in, out_channels, kernel_size=3, act="RELU", norm="BATCH")
            for c_in in (in_channels, out_channels)
        )
    )


class UNet(nn.Module):
    """U-Net with ``width`` scaling every channel count; one logit map of the input's size."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: float = 1.0):
        super().__init__()
        width = check_width(width)
        levels = [scaled_channels(c, width) for c in ENCODER_CHANNELS]
        bottom = scaled_channels(BOTTLENECK_CHANNELS, width)
        self.encoders = nn.ModuleList()
        c_in = in_channels
        for c in levels:
            self.encoders.append(double_conv(c_in, c))
            c_in = c
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = double_conv(c_in, bottom)
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        c_in = bottom
        for c in reversed(levels):
            self.upsamples.append(UpSample(2, c_in, c, scale_factor=2, mode="deconv"))
            self.decoders.append(double_conv(2 * c, c))
            c_in = c
        self.head = Convolution(2, c_in, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape, "unet")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamples, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)
