"""Channel widths and input sizes shared by the suite's three networks.

Kept free of torch so that ``import calf.models`` stays light.
"""

from __future__ import annotations

import math

MIN_CHANNELS = 4
"""Fewest channels a layer keeps however small ``width`` is (BatchNorm needs a few)."""

SIZE_MULTIPLE = 32
"""Every network downsamples five times (output stride 32): H and W must divide by 32."""


def check_width(width: float) -> float:
    """Return ``width`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    try:
        value = float(width)
    except (TypeError, ValueError):
        raise ValueError(f"width must be a positive number, got {width!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return value


def scaled_channels(channels: int, width: float) -> int:
    """The authors' channel count ``channels`` times ``width``, rounded, at least MIN_CHANNELS."""
    return max(MIN_CHANNELS, int(round(channels * width)))


def check_input_size(shape: tuple[int, ...], model: str) -> None:
    """Raise ``ValueError`` naming the size unless ``shape`` is (B, C, H, W), H and W % 32 == 0."""
    if len(shape) != 4:
        raise ValueError(f"{model} takes a (B, C, H, W) input, got shape {tuple(shape)}")
    height, width = shape[-2:]
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or height == 0 or width == 0:
        raise ValueError(
            f"{model} needs an input height and width divisible by {SIZE_MULTIPLE}, "
            f"got {height} x {width}"
        )
